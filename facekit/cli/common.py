"""What every ``facekit`` subcommand shares: exit codes, the :class:`Outcome` that collects rows and
failures, the store and embedder named by the common options, and photo files from arguments.
Taught in notebook 07."""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_NOT_FOUND", "EXIT_INTERRUPTED", "EPILOG", "Outcome",
           "jsonable", "table", "store_of", "embedder_of", "photo_files", "faces_in", "report_error"]

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
    from facekit.store.db import FaceStore

    return FaceStore(args.store)


def embedder_of(args):
    """The embedder of ``--model`` (default facenet128) at ``--precision``, one per process."""
    from facekit.embedding.embedder import get_embedder
    from facekit.models.registry import spec_name

    return get_embedder(spec_name(getattr(args, "model", None)), precision=args.precision)


def photo_files(paths: list[str], out: Outcome) -> list[Path]:
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


def faces_in(files: list[Path], args, out: Outcome, *, largest: bool = False):
    """Yield ``(path, faces)`` (FaceEmbedding list, largest first if ``largest``) per readable photo."""
    from tqdm.auto import tqdm

    from facekit.core.images import ImageLoadError, load_image
    from facekit.faces import extract_faces

    emb = embedder_of(args)
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


def report_error(args, out: Outcome, message: str, code: int) -> int:
    """Report an error on stderr (and as JSON on stdout with --json); return ``code``."""
    print(f"facekit: {message}", file=sys.stderr)
    if args.json:
        print(json.dumps({"command": args.command, "rows": out.rows, "failed": out.failed, "error": message,
                          "exit_code": code}, default=jsonable))
    return code
