"""``facekit fetch | detect | verify | identify | lfw``: questions about photos (notebook 07)."""

from __future__ import annotations

import sys
from pathlib import Path

from facekit.cli.common import Outcome, embedder_of, faces_in, photo_files, store_for_model


# -- subcommands ---------------------------------------------------------------------------------
def cmd_fetch(args, out: Outcome) -> int:
    from facekit.embedding.facenet import compile_default
    from facekit.core.cache import cache_dir, fetch_all

    from facekit.detection.onnxnets import fp32_paths

    fetch_all()  # model weights + sample photos, sha256-checked
    compiled = compile_default()  # the embedding network folded and exported once (ONNX Runtime)
    fp32_paths()  # MTCNN's three networks exported once from the mtcnn wheel's weights (no TensorFlow)
    out.rows.append({"cache": str(cache_dir()), "compiled": str(compiled or "-"), "status": "ready"})
    return out.finish(["cache", "compiled", "status"])


def cmd_detect(args, out: Outcome) -> int:
    from facekit.detection.detector import get_detector
    from facekit.core.images import ImageLoadError, load_image

    det = get_detector()
    for p in photo_files(args.photos, out):
        try:
            faces = det.detect(load_image(p))
        except ImageLoadError as exc:
            out.fail(p, f"{exc.reason} ({exc.fix})")
            continue
        if not faces:
            out.not_found = True
            out.rows.append({"photo": str(p), "face": None, "box": None, "confidence": None})
        for i, f in enumerate(faces):
            out.rows.append({"photo": str(p), "face": i, "box": [round(float(v), 1) for v in f.box],
                             "confidence": round(float(f.confidence), 4)})
    return out.finish(["photo", "face", "box", "confidence"])


def cmd_verify(args, out: Outcome) -> int:
    from facekit.recognition.verify import sq_l2

    got = {str(p): faces for p, faces, emb in faces_in(photo_files([args.a, args.b], out), args, out, largest=True)}
    if out.failed or len(got) < 2:
        return out.finish()
    for p, faces in got.items():
        if not faces:
            out.not_found = True
            print(f"facekit: {p}: no face found", file=sys.stderr)
    if out.not_found:
        return out.finish()
    ea, eb = (got[k][0].embedding for k in got)
    d = float(sq_l2(ea[None], eb[None])[0])
    th = args.threshold if args.threshold is not None else verify_threshold(args)
    out.rows.append({"a": args.a, "b": args.b, "distance": round(d, 4), "threshold": th, "same": bool(d < th)})
    return out.finish(["a", "b", "distance", "threshold", "same"])


def verify_threshold(args) -> float:
    """The calibrated "same person" cut of the model that embedded (int8 has its own; "auto"
    resolves to the precision actually used)."""
    return embedder_of(args).thresholds.verify


def gallery_from_known(known: str, args, out: Outcome):
    """face_recognition's layout: ``known/<name>.jpg`` (name from the file) or ``known/<name>/*.jpg``."""
    import numpy as np

    from facekit.store.index import GalleryIndex
    from facekit.core.names import check_name

    root = Path(known)
    files = photo_files([known], out)
    x, names = [], []
    for p, faces, _ in faces_in(files, args, out, largest=True):
        rel = Path(p).relative_to(root.resolve())
        name = check_name(rel.parts[0] if len(rel.parts) > 1 else rel.stem)
        if not faces:
            print(f"facekit: {p}: no face found; {name} not learnt from it", file=sys.stderr)
            continue
        x.append(faces[0].embedding)
        names.append(name)
    index = GalleryIndex(embedder_of(args).dim)
    if x:
        index.add(np.stack(x), np.arange(len(x)), names)
    return index


def cmd_identify(args, out: Outcome) -> int:
    from facekit.recognition.identify import default_threshold

    emb = embedder_of(args)
    if args.known:
        index = gallery_from_known(args.known, args, out)
        targets = [args.unknown] if args.unknown else args.photos
    else:
        from facekit.store.index_file import gallery_from_store

        store = store_for_model(args, out)
        index = gallery_from_store(store, emb, progress=not args.quiet)  # trained once per store change, kept
        targets = args.photos
    if not targets:
        raise ValueError("identify needs PHOTO... or DIR (or --known DIR --unknown DIR)")
    if len(index) == 0:
        from facekit.store.db import EmptyStoreError

        raise EmptyStoreError("nobody is enrolled. Fix: `facekit enrol NAME PHOTO...` (or pass --known DIR)")
    th = args.tolerance if args.tolerance is not None else default_threshold(emb.fingerprint)
    for p, faces, _ in faces_in(photo_files(targets, out), args, out):
        if not faces:
            out.not_found = True
            out.rows.append({"photo": str(p), "face": None, "name": "no face", "distance": None})
            continue
        import numpy as np

        names, dist = index.identify(np.stack([f.embedding for f in faces]), th)
        for i, (n, d, f) in enumerate(zip(names, dist, faces)):
            out.rows.append({"photo": str(p), "face": i, "name": n, "distance": round(float(d), 4),
                             "box": [round(float(v), 1) for v in f.face.box]})
    out.extra["threshold"] = th
    return out.finish(["photo", "face", "name", "distance"])


def cmd_lfw(args, out: Outcome) -> int:
    from facekit.teach.lfw import lfw_verification

    res, embs = lfw_verification(per_fold=args.per_fold, progress=not args.quiet)
    out.rows.append({"pairs": int(len(embs.same)), "accuracy": round(res.mean, 4), "std": round(res.std, 4),
                     "no_face": len(embs.no_face)})
    return out.finish(["pairs", "accuracy", "std", "no_face"])


def cmd_models(args, out: Outcome) -> int:
    from facekit.models.registry import DEFAULT_MODEL, MODELS

    for name, spec in MODELS.items():
        th = spec.thresholds
        out.rows.append({"model": name + (" (default)" if name == DEFAULT_MODEL else ""), "dim": spec.dim,
                         "verify": th and th.verify, "unknown": th and th.unknown, "cluster": th and th.cluster,
                         "about": spec.description})
    return out.finish(["model", "dim", "verify", "unknown", "cluster", "about"])
