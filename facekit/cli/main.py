"""The ``facekit`` command: the notebooks' pipeline on your own photos, from a shell.

Taught in notebook 07 ("At scale"). Built on :mod:`argparse` (standard library): subcommands,
help and usage errors (exit 2) come with Python, so the command adds no dependency and starts
without importing TensorFlow for ``people``/``forget``/``--help``.

Exit codes (also in ``facekit --help`` and the README):

  0    success
  1    some inputs failed (unreadable photo or folder, missing file); the others were processed
  2    usage error (bad option, bad name, bad value)
  3    nothing found: no face in a photo, an unknown person, an empty store
  130  interrupted (Ctrl-C); what was committed to the store stays committed
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_NOT_FOUND", "EXIT_INTERRUPTED"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EPILOG = """exit codes: 0 ok; 1 some inputs failed (the rest was processed); 2 usage error;
3 nothing found (no face, unknown person, empty store); 130 interrupted (committed work is kept).
The face store is $FACEKIT_STORE or ~/.local/share/facekit/faces.sqlite3 (--store overrides)."""


class Outcome:
    """Collects a command's rows, failures and "not found" flags, then prints and picks the exit code."""

    def __init__(self, args):
        self.args, self.rows, self.failed, self.not_found, self.extra = args, [], [], False, {}

    def fail(self, path, reason: str) -> None:
        self.failed.append({"path": str(path), "error": reason})
        print(f"facekit: {path}: {reason}", file=sys.stderr)

    def finish(self, columns: list[str] | None = None) -> int:
        if self.args.json:
            print(json.dumps({"command": self.args.command, "rows": self.rows, "failed": self.failed, **self.extra},
                             default=_jsonable))
        elif columns and self.rows:
            print(_table(self.rows, columns))
        code = EXIT_FAILED if self.failed else EXIT_NOT_FOUND if self.not_found else EXIT_OK
        return code


def _jsonable(v):
    import numpy as np

    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    return "" if v is None else str(v)


def _table(rows: list[dict], columns: list[str]) -> str:
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(x.ljust(w) for x, w in zip(row, widths)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


# -- shared helpers ------------------------------------------------------------------------------
def _store(args):
    from facekit.store.db import FaceStore

    return FaceStore(args.store)


def _embedder(args):
    from facekit.embedding.embedder import Embedder

    return Embedder(precision=args.precision) if args.precision else Embedder()


def _photos(paths: list[str], out: Outcome) -> list[Path]:
    """Photo files from PHOTO or DIR arguments (folders: their image files, recursively)."""
    from facekit.album.scan import list_photos

    files = []
    for p in map(Path, paths):
        if p.is_dir():
            try:
                files += [Path(f.path) for f in list_photos(p)]
            except OSError as exc:
                out.fail(p, str(exc))
        elif not p.exists():
            out.fail(p, "file not found; check the path")
        else:
            files.append(p)
    return files


def _faces(files: list[Path], args, out: Outcome, *, largest: bool = False):
    """Yield ``(path, faces)`` (FaceEmbedding list, largest first if ``largest``) per readable photo."""
    from tqdm.auto import tqdm

    from facekit.core.images import ImageLoadError, load_image
    from facekit.faces import extract_faces

    emb = _embedder(args)
    for p in tqdm(files, desc=args.command, unit="photo", disable=args.quiet or len(files) < 3, file=sys.stderr):
        try:
            img = load_image(p)
        except ImageLoadError as exc:
            out.fail(p, f"{exc.reason} ({exc.fix})")
            continue
        faces = extract_faces(img, embedder=emb)
        if largest:
            faces = sorted(faces, key=lambda f: -f.face.area)
        yield p, faces, emb


# -- subcommands ---------------------------------------------------------------------------------
def cmd_fetch(args, out: Outcome) -> int:
    from facekit.embedding.facenet import compile_default
    from facekit.core.cache import cache_dir, fetch_all

    fetch_all()  # model weights + sample photos, sha256-checked
    compiled = compile_default()  # the embedding network folded and exported once (ONNX Runtime)
    out.rows.append({"cache": str(cache_dir()), "compiled": str(compiled or "-"), "status": "ready"})
    return out.finish(["cache", "compiled", "status"])


def cmd_detect(args, out: Outcome) -> int:
    from facekit.detection.detector import get_detector
    from facekit.core.images import ImageLoadError, load_image

    det = get_detector()
    for p in _photos(args.photos, out):
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

    got = {str(p): faces for p, faces, emb in _faces(_photos([args.a, args.b], out), args, out, largest=True)}
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
    th = args.threshold if args.threshold is not None else _verify_threshold(args)
    out.rows.append({"a": args.a, "b": args.b, "distance": round(d, 4), "threshold": th, "same": bool(d < th)})
    return out.finish(["a", "b", "distance", "threshold", "same"])


def _verify_threshold(args) -> float:
    """The calibrated "same person" cut of the model that embedded (int8 has its own; "auto"
    resolves to the precision actually used)."""
    return _embedder(args).thresholds.verify


def cmd_enrol(args, out: Outcome) -> int:
    import hashlib

    import numpy as np

    from facekit.core.names import check_name
    from facekit.store.db import PhotoSource

    name = check_name(args.name)
    embs, sources, emb = [], [], None
    for p, faces, emb in _faces(_photos(args.photos, out), args, out, largest=True):
        if not faces:
            out.not_found = True
            print(f"facekit: {p}: no face found; not enrolled", file=sys.stderr)
            continue
        embs.append(faces[0].embedding)
        sources.append(PhotoSource(str(Path(p).resolve()), hashlib.sha256(Path(p).read_bytes()).hexdigest(),
                                   tuple(float(v) for v in faces[0].face.box)))
    if embs:
        ids = _store(args).add_faces(name, np.stack(embs), model=emb, sources=sources)
        out.rows += [{"name": name, "photo": s.path, "face_id": i} for s, i in zip(sources, ids)]
    else:
        out.not_found = True
    return out.finish(["name", "photo", "face_id"])


def cmd_people(args, out: Outcome) -> int:
    import time

    for p in _store(args).people():
        out.rows.append({"name": p.name, "faces": p.faces, "added": time.strftime("%Y-%m-%d %H:%M", time.localtime(p.added)),
                         "consent": p.consent})
    return out.finish(["name", "faces", "added", "consent"])


def cmd_forget(args, out: Outcome) -> int:
    n = _store(args).forget(args.name)
    out.rows.append({"name": args.name, "faces_removed": n})
    return out.finish(["name", "faces_removed"])


def _gallery_from_known(known: str, args, out: Outcome):
    """face_recognition's layout: ``known/<name>.jpg`` (name from the file) or ``known/<name>/*.jpg``."""
    import numpy as np

    from facekit.store.index import GalleryIndex
    from facekit.core.names import check_name

    root = Path(known)
    files = _photos([known], out)
    x, names = [], []
    for p, faces, _ in _faces(files, args, out, largest=True):
        rel = Path(p).relative_to(root.resolve())
        name = check_name(rel.parts[0] if len(rel.parts) > 1 else rel.stem)
        if not faces:
            print(f"facekit: {p}: no face found; {name} not learnt from it", file=sys.stderr)
            continue
        x.append(faces[0].embedding)
        names.append(name)
    index = GalleryIndex(_embedder(args).dim)
    if x:
        index.add(np.stack(x), np.arange(len(x)), names)
    return index


def cmd_identify(args, out: Outcome) -> int:
    from facekit.recognition.identify import default_threshold

    emb = _embedder(args)
    if args.known:
        index = _gallery_from_known(args.known, args, out)
        targets = [args.unknown] if args.unknown else args.photos
    else:
        from facekit.store.index_file import gallery_from_store

        store = _store(args)
        index = gallery_from_store(store, emb)  # a large gallery's trained index is kept between runs
        targets = args.photos
    if not targets:
        raise ValueError("identify needs PHOTO... or DIR (or --known DIR --unknown DIR)")
    if len(index) == 0:
        from facekit.store.db import EmptyStoreError

        raise EmptyStoreError("nobody is enrolled. Fix: `facekit enrol NAME PHOTO...` (or pass --known DIR)")
    th = args.tolerance if args.tolerance is not None else default_threshold(emb.fingerprint)
    for p, faces, _ in _faces(_photos(targets, out), args, out):
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


def cmd_index(args, out: Outcome) -> int:
    store = _store(args)
    if args.engine == "ray":
        from facekit.album.ray import index_folder_ray

        report = index_folder_ray(args.dir, store, address=args.address, num_cpus=args.num_cpus,
                                  precision=args.precision, shards=args.shards, progress=not args.quiet)
    else:
        from facekit.album.scan import run_local

        report, _ = run_local(args.dir, store, precision=args.precision, progress=not args.quiet)
    for p, reason in report.failed:
        out.fail(p, reason)
    out.rows.append({k: v for k, v in report.to_dict().items() if k not in ("failed", "stage_s")})
    out.extra["stage_s"] = report.stage_s
    if report.interrupted:
        out.finish(["engine", "photos", "cached", "indexed", "faces", "seconds"])
        return EXIT_INTERRUPTED
    return out.finish(["engine", "photos", "cached", "reused", "indexed", "faces", "no_face", "photos_per_s"])


def cmd_album(args, out: Outcome) -> int:
    from facekit.album.organise import organise_album

    album = organise_album(args.dir, progress=not args.quiet, embedder=_embedder(args))
    dest = album.export(args.out, mode=args.mode, merge=args.merge)
    for s in album.skipped:
        out.fail(s.path, s.reason)
    for name, paths in album.people.items():
        out.rows.append({"person": name, "faces": len(album.faces_of(name)), "photos": len(paths),
                         "folder": str(Path(dest) / name)})
    out.extra["no_face"] = album.no_faces
    return out.finish(["person", "faces", "photos", "folder"])


def cmd_live(args, out: Outcome) -> int:
    from facekit.live import LiveRecognizer
    from facekit.live.loop import annotate
    from facekit.live.video import VideoSource

    ident = _store(args).identifier(_embedder(args), allow_empty=True)
    rec = LiveRecognizer(ident, embedder=_embedder(args))
    src = VideoSource(args.source)
    writer = None
    try:
        for i, frame in enumerate(src):
            if args.max_frames is not None and i >= args.max_frames:
                break
            r = rec.process(frame)
            out.rows.append({"frame": i, "names": list(r.names), "latency_ms": round(float(r.latency_ms), 1)})
            if not args.json and not args.quiet:
                print(f"frame {i}: {', '.join(r.names) or '-'}", flush=True)
            if args.out:
                import cv2

                if writer is None:
                    h, w = frame.shape[:2]
                    writer = cv2.VideoWriter(args.out, cv2.VideoWriter_fourcc(*"mp4v"), src.fps or 15.0, (w, h))
                ann = annotate(frame, r) if r.ok else frame
                writer.write(cv2.cvtColor(ann, cv2.COLOR_RGB2BGR))
    finally:
        src.close()
        if writer is not None:
            writer.release()
    return out.finish() if args.json else EXIT_OK


def cmd_lfw(args, out: Outcome) -> int:
    from facekit.teach.lfw import lfw_verification

    res, embs = lfw_verification(per_fold=args.per_fold, progress=not args.quiet)
    out.rows.append({"pairs": int(len(embs.same)), "accuracy": round(res.mean, 4), "std": round(res.std, 4),
                     "no_face": len(embs.no_face)})
    return out.finish(["pairs", "accuracy", "std", "no_face"])


# -- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output (one JSON object on stdout)")
    common.add_argument("--store", default=None, help="face store file (default $FACEKIT_STORE or "
                        "~/.local/share/facekit/faces.sqlite3)")
    common.add_argument("--precision", choices=("fp32", "int8", "auto"), default=None,
                        help="embedding precision (default fp32 or $FACEKIT_PRECISION)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    ap = argparse.ArgumentParser(prog="facekit", description="Face detection, verification, identification and "
                                 "photo indexing with FaceNet (the facekit notebooks, from a shell).",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, fn, help):
        p = sub.add_parser(name, parents=[common], help=help, description=help, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(fn=fn)
        return p

    add("fetch", cmd_fetch, "download and verify the model and sample photos")
    add("detect", cmd_detect, "faces (box, confidence) in photos").add_argument("photos", nargs="+", metavar="PHOTO")
    p = add("verify", cmd_verify, "are the largest faces of two photos the same person?")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("--threshold", type=float, default=None, help="squared L2 cut (default: the model's calibrated one)")
    p = add("enrol", cmd_enrol, "add a person's faces (largest face of each photo) to the store")
    p.add_argument("name", metavar="NAME")
    p.add_argument("photos", nargs="+", metavar="PHOTO")
    add("people", cmd_people, "list enrolled people")
    add("forget", cmd_forget, "remove a person and all their faces").add_argument("name", metavar="NAME")
    p = add("identify", cmd_identify, "name every face (or 'unknown') with its distance")
    p.add_argument("photos", nargs="*", metavar="PHOTO|DIR")
    p.add_argument("--known", metavar="DIR", help="gallery folder instead of the store: known/NAME.jpg or known/NAME/*.jpg")
    p.add_argument("--unknown", metavar="DIR", help="photos to name (with --known)")
    p.add_argument("--tolerance", type=float, default=None, help="squared L2 cut for 'unknown' (default: calibrated)")
    p = add("index", cmd_index, "embed a photo tree into the store (only new or changed photos)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="local (default) or a Ray Data job")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local instance)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--shards", default=None, metavar="DIR_OR_URI",
                   help="where the Ray job's Parquet shards go (a folder every node can write, e.g. "
                        "s3://bucket/shards; default $FACEKIT_SHARDS, else a temporary folder)")
    p = add("album", cmd_album, "cluster a photo folder by person and export one folder per person")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--out", required=True, metavar="DEST")
    p.add_argument("--mode", choices=("copy", "symlink", "hardlink"), default="copy")
    p.add_argument("--merge", action="store_true", help="allow a non-empty DEST (existing files are kept)")
    p = add("live", cmd_live, "recognise faces in a video file, camera index or stream URL")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("--out", default=None, metavar="VIDEO.mp4", help="write the annotated video")
    p.add_argument("--max-frames", type=int, default=None)
    p = add("lfw", cmd_lfw, "LFW 10-fold verification accuracy")
    p.add_argument("--per-fold", type=int, default=None, help="pairs per fold (default: all 600; e.g. 20 for a quick run)")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``facekit`` console script; returns the exit code."""
    from facekit.core.images import ImageLoadError

    args = build_parser().parse_args(argv)
    if getattr(args, "known", None) and not getattr(args, "unknown", None) and not args.photos:
        print("facekit: error: --known needs --unknown DIR or PHOTO...", file=sys.stderr)
        return EXIT_USAGE
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = Outcome(args)
    try:
        return args.fn(args, out)
    except KeyboardInterrupt:
        return _error(args, out, "interrupted; work committed so far is kept", EXIT_INTERRUPTED)
    except LookupError as exc:  # UnknownPersonError, EmptyStoreError
        return _error(args, out, str(exc), EXIT_NOT_FOUND)
    except (ImageLoadError, OSError) as exc:
        return _error(args, out, str(exc), EXIT_FAILED)
    except ValueError as exc:  # bad names, values: the API's own messages
        return _error(args, out, f"error: {exc}", EXIT_USAGE)


def _error(args, out: Outcome, message: str, code: int) -> int:
    """Report an error on stderr (and as JSON on stdout with --json); return ``code``."""
    print(f"facekit: {message}", file=sys.stderr)
    if args.json:
        print(json.dumps({"command": args.command, "rows": out.rows, "failed": out.failed, "error": message,
                          "exit_code": code}, default=_jsonable))
    return code


if __name__ == "__main__":
    sys.exit(main())
