"""The ``facekit`` command: the notebooks' pipeline on your own photos, from a shell.

Taught in notebook 07 ("At scale"). Built on :mod:`argparse` (standard library): subcommands,
help and usage errors (exit 2) come with Python, so the command adds no dependency and starts
without importing TensorFlow for ``people``/``forget``/``--help``.

Exit codes (also in ``facekit --help`` and the README):

  0    success
  1    some inputs failed (unreadable photo or folder, missing file, a damaged or stale store or
       file); the others were processed
  2    usage error (bad option, bad name, bad value)
  3    nothing found: no face in a photo, an unknown person, an empty store
  130  interrupted (Ctrl-C); what was committed to the store stays committed
"""

from __future__ import annotations

import argparse
import os
import sys

from facekit.cli.archive import cmd_album, cmd_index, cmd_live
from facekit.cli.common import (EPILOG, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, Outcome,
                                close_store, report_error)
from facekit.cli.people import cmd_enrol, cmd_export, cmd_forget, cmd_gc, cmd_import, cmd_people
from facekit.cli.photos import cmd_detect, cmd_fetch, cmd_identify, cmd_lfw, cmd_models, cmd_verify

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_NOT_FOUND", "EXIT_INTERRUPTED"]


# -- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output (one JSON object on stdout)")
    common.add_argument("--store", default=None, help="face store file (default $FACEKIT_STORE or "
                        "~/.local/share/facekit/faces.sqlite3)")
    common.add_argument("--precision", choices=("fp32", "int8", "auto"), default=None,
                        help="embedding precision (default fp32 or $FACEKIT_PRECISION)")
    common.add_argument("--model", default=None, metavar="NAME",
                        help="embedding model (default facenet128; `facekit models` lists them)")
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
    add("models", cmd_models, "list the embedding models and their calibrated thresholds")
    add("detect", cmd_detect, "faces (box, confidence) in photos").add_argument("photos", nargs="+", metavar="PHOTO")
    p = add("verify", cmd_verify, "are the largest faces of two photos the same person?")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("--threshold", type=float, default=None, help="squared L2 cut (default: the model's calibrated one)")
    p = add("enrol", cmd_enrol, "add a person's faces (largest face of each photo) to the store")
    p.add_argument("name", metavar="NAME")
    p.add_argument("photos", nargs="+", metavar="PHOTO")
    p.add_argument("--consent", default=None, metavar="TEXT",
                   help="the person's consent note, stored with its date (e.g. 'agreed in person, 2024-05-01')")
    p = add("people", cmd_people, "list enrolled people, their consent notes and when they were last seen")
    p.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                   help="only people whose last enrolment or match is older than DAYS (retention)")
    add("forget", cmd_forget, "remove a person, all their faces and every file facekit derived from them"
        ).add_argument("name", metavar="NAME")
    p = add("export", cmd_export, "write people and their faces to a shareable .npz file")
    p.add_argument("path", metavar="FILE")
    p.add_argument("--names", nargs="+", default=None, metavar="NAME", help="only these people (default: everyone)")
    p.add_argument("--force", action="store_true", help="replace FILE even if it is another kind of file or "
                   "another store's export")
    add("import", cmd_import, "add the people of an exported .npz file to the store").add_argument("path", metavar="FILE")
    add("gc", cmd_gc, "remove cached files (saved gallery indexes) of face stores that no longer exist, and "
        "flush the store's write-ahead log")
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
    p.add_argument("--min-face-size", type=float, default=20.0, metavar="PX",
                   help="smallest face to find, in pixels of the photo (default 20)")
    p.add_argument("--max-side", type=int, default=1280, metavar="PX",
                   help="detect on a copy whose longer side is at most PX (default 1280; 0: full size)")
    p.add_argument("--detect-precision", choices=("fp32", "int8"), default="fp32",
                   help="MTCNN networks' arithmetic (default fp32)")
    p = add("album", cmd_album, "cluster a photo folder by person and export one folder per person")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--out", required=True, metavar="DEST")
    p.add_argument("--mode", choices=("copy", "symlink", "hardlink"), default="copy")
    p.add_argument("--merge", action="store_true", help="allow a non-empty DEST (existing files are kept)")
    p = add("live", cmd_live, "recognise faces in a video file, camera index or stream URL")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("--out", default=None, metavar="VIDEO.mp4", help="write the annotated video")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--max-frames", type=int, default=None)
    p = add("lfw", cmd_lfw, "LFW 10-fold verification accuracy")
    p.add_argument("--per-fold", type=int, default=None, help="pairs per fold (default: all 600; e.g. 20 for a quick run)")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``facekit`` console script; returns the exit code."""
    from facekit.core.images import ImageLoadError
    from facekit.core.origin import StaleFileError
    from facekit.store.records import StoreError

    args = build_parser().parse_args(argv)
    if getattr(args, "known", None) and not getattr(args, "unknown", None) and not args.photos:
        print("facekit: error: --known needs --unknown DIR or PHOTO...", file=sys.stderr)
        return EXIT_USAGE
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = Outcome(args)
    try:
        try:
            return args.fn(args, out)
        finally:
            close_store(args)
    except KeyboardInterrupt:
        return report_error(args, out, "interrupted; work committed so far is kept", EXIT_INTERRUPTED)
    except LookupError as exc:  # UnknownPersonError, EmptyStoreError
        return report_error(args, out, str(exc), EXIT_NOT_FOUND)
    except (ImageLoadError, OSError, StoreError, StaleFileError) as exc:  # a file facekit cannot use
        return report_error(args, out, str(exc), EXIT_FAILED)
    except ValueError as exc:  # bad names, values: the API's own messages
        return report_error(args, out, f"error: {exc}", EXIT_USAGE)


if __name__ == "__main__":
    sys.exit(main())
