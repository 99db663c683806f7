"""What every ``facekit`` subcommand shares: exit codes, the :class:`Outcome` that collects rows and
failures, the store and embedder named by the common options, and photo files from arguments.
Taught in notebook 07."""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_NOT_FOUND", "EXIT_INTERRUPTED", "EPILOG", "Outcome",
           "jsonable", "table", "store_of", "embedder_of", "photo_files", "faces_in", "report_error",
           "refresh_gallery_of", "gc_at_start", "NO_CACHE_COMMANDS", "store_for_model", "close_store"]

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
                             default=jsonable))
        elif columns and self.rows:
            print(table(self.rows, columns))
        code = EXIT_FAILED if self.failed else EXIT_NOT_FOUND if self.not_found else EXIT_OK
        return code


def jsonable(v):
    import numpy as np

    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def fmt_cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(fmt_cell(x) for x in v) + ")"
    return "" if v is None else str(v)


def table(rows: list[dict], columns: list[str]) -> str:
    cells = [[fmt_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(x.ljust(w) for x, w in zip(row, widths)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


# -- shared helpers ------------------------------------------------------------------------------
def store_of(args):
    """The face store of ``--store`` (default ``$FACEKIT_STORE``), one per command, closed when the
    command ends (:func:`close_store`); the first call of a command cleans the cache first
    (:func:`gc_at_start`)."""
    from facekit.store.db import FaceStore

    gc_at_start(args)
    if getattr(args, "_store", None) is None:
        args._store = FaceStore(args.store)
    return args._store


def close_store(args) -> None:
    """Close the command's store: SQLite then folds its write-ahead log into the file, so a plain
    copy of ``faces.sqlite3`` made after the command holds everything it wrote."""
    store = getattr(args, "_store", None)
    if store is not None:
        args._store = None
        store.close()


def store_for_model(args, out: Outcome, *, photos: bool = False):
    """The store of ``--store``, switched to ``--model``: people enrolled only with other models
    get faces of this one, re-embedded from their photos with a progress bar; what cannot be
    (webcam faces, photos moved or changed) is printed with the fix (:mod:`facekit.store.switch`).
    ``photos``: also the photo cache of ``facekit index``."""
    from facekit.store.switch import people_without

    store, emb = store_of(args), embedder_of(args)
    lacking = people_without(store, emb)
    if lacking or (photos and any(m != emb.fingerprint for m in store.photo_models())):
        if lacking:
            print(f"facekit: {len(lacking)} enrolled people have no {emb.spec.name} faces yet; re-embedding their "
                  "photos", file=sys.stderr)
        report = store.switch_model(emb, photos=photos, progress=not args.quiet)
        if report.faces or report.photos or report.missing:
            print("facekit: " + report.summary().replace("\n", "\nfacekit: "), file=sys.stderr)
        out.extra["switched"] = {"model": report.model, "faces": report.faces, "photos": report.photos,
                                 "missing": [list(m) for m in report.missing]}
    return store


#: commands that do not use facekit's cache folder (no clean-up at their start)
NO_CACHE_COMMANDS = ("people", "models")


def gc_at_start(args) -> None:
    """The start of every command that uses the cache (its first :func:`store_of` or
    :func:`embedder_of`): remove the saved gallery indexes of face stores that no longer exist
    (:func:`facekit.store.derived.gc_cache`; once per command, cheap, never fatal)."""
    if args.command in NO_CACHE_COMMANDS or args.command == "gc" or getattr(args, "_cache_cleaned", False):
        return
    args._cache_cleaned = True
    from facekit.store.derived import gc_cache

    try:
        gone = gc_cache()
    except Exception as exc:  # noqa: BLE001 - a clean-up must never stop the command
        print(f"facekit: warning: cache clean-up skipped ({exc})", file=sys.stderr)
        return
    if gone and not args.quiet:
        print(f"facekit: removed {len(gone)} cached file(s) of face stores that no longer exist "
              "(`facekit gc` lists them)", file=sys.stderr)


def refresh_gallery_of(store, model, args) -> str:
    """After a command changed the store (``enrol``, ``index``): bring the saved gallery index of
    ``model`` up to date now, with a progress bar, so that the next ``identify`` does not train
    (:func:`facekit.store.index_file.refresh_gallery`). Returns what was done."""
    from facekit.store.index_file import refresh_gallery

    return refresh_gallery(store, model, progress=not args.quiet)


def embedder_of(args):
    """The embedder of ``--model`` (default facenet128) at ``--precision``, one per process."""
    from facekit.embedding.embedder import get_embedder
    from facekit.models.registry import spec_name

    gc_at_start(args)
    return get_embedder(spec_name(getattr(args, "model", None)), precision=args.precision)


def photo_files(paths: list[str], out: Outcome) -> list[Path]:
    """Photo files from PHOTO or DIR arguments (folders: their image files, recursively)."""
    from facekit.album.scan import list_photos

    files = []
    for p in map(Path, paths):
        if p.is_dir():
            problems: list[tuple[str, str]] = []
            try:
                files += [Path(f.path) for f in list_photos(p, problems=problems)]
            except OSError as exc:
                out.fail(p, str(exc))
            for q, why in problems:  # link loops, unreadable folders, files gone mid-walk: the rest goes on
                out.fail(q, why)
        elif not p.exists():
            out.fail(p, "file not found; check the path")
        else:
            files.append(p)
    return files


def faces_in(files: list[Path], args, out: Outcome, *, largest: bool = False):
    """Yield ``(path, faces)`` (FaceEmbedding list, largest first if ``largest``) per readable photo.
    A photo decoded at reduced size (over 50 MP) has its boxes given in its full-size pixels."""
    import dataclasses

    from tqdm.auto import tqdm

    from facekit.album.scan import CHUNK, detect_batched
    from facekit.core.images import ImageLoadError, load_image_scaled
    from facekit.detection.detector import get_detector
    from facekit.faces import extract_faces

    emb = embedder_of(args)
    det = get_detector()
    bar = tqdm(total=len(files), desc=args.command, unit="photo", disable=args.quiet or len(files) < 3, file=sys.stderr)

    def embedded(chunk: list):
        # one batched detector call for the chunk's same-size photos: the same faces as one by one
        # (tests/test_cascade.py), LFW-size photos ~20% faster
        for (p, img, scale), dets in zip(chunk, detect_batched([img for _, img, _ in chunk], det)):
            faces = extract_faces(img, embedder=emb, faces=dets)
            if scale != 1.0:
                faces = [dataclasses.replace(f, face=f.face.scaled(scale)) for f in faces]
            if largest:
                faces = sorted(faces, key=lambda f: -f.face.area)
            bar.update(1)
            yield p, faces, emb

    chunk: list = []
    for p in files:
        try:
            img, scale = load_image_scaled(p)
        except ImageLoadError as exc:
            out.fail(p, f"{exc.reason} ({exc.fix})")
            bar.update(1)
            continue
        large = bool(det.max_side) and max(img.shape[:2]) > det.max_side
        if large and chunk:  # a large photo goes alone (memory); the photos before it go first
            yield from embedded(chunk)
            chunk = []
        chunk.append((p, img, scale))
        if large or len(chunk) >= CHUNK:
            yield from embedded(chunk)
            chunk = []
    yield from embedded(chunk)
    bar.close()


def report_error(args, out: Outcome, message: str, code: int) -> int:
    """Report an error on stderr (and as JSON on stdout with --json); return ``code``."""
    print(f"facekit: {message}", file=sys.stderr)
    if args.json:
        print(json.dumps({"command": args.command, "rows": out.rows, "failed": out.failed, "error": message,
                          "exit_code": code}, default=jsonable))
    return code
