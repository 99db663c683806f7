"""``facekit enrol | people | forget | export | import | gc``: the people in your face store and the
files derived from it (notebooks 04, 07; issue 25)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from facekit.cli.common import Outcome, faces_in, photo_files, refresh_gallery_of, store_of


def _date(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def cmd_enrol(args, out: Outcome) -> int:
    import hashlib

    import numpy as np

    from facekit.core.names import check_name
    from facekit.store.db import PhotoSource

    name = check_name(args.name)
    consent = args.consent
    if consent is not None and not consent.strip():
        raise ValueError("--consent needs a note in words, e.g. --consent 'agreed in person, 2024-05-01'")
    embs, sources, emb = [], [], None
    for p, faces, emb in faces_in(photo_files(args.photos, out), args, out, largest=True):
        if not faces:
            out.not_found = True
            print(f"facekit: {p}: no face found; not enrolled", file=sys.stderr)
            continue
        embs.append(faces[0].embedding)
        sources.append(PhotoSource(str(Path(p).resolve()), hashlib.sha256(Path(p).read_bytes()).hexdigest(),
                                   tuple(float(v) for v in faces[0].face.box)))
    if embs:
        store = store_of(args)
        ids = store.add_faces(name, np.stack(embs), model=emb, sources=sources, consent=consent)
        out.rows += [{"name": name, "photo": s.path, "face_id": i} for s, i in zip(sources, ids)]
        if consent is None and not any(p.consent for p in store.people() if p.name == name):
            print(f"facekit: no consent note is recorded for {name}. Record one with --consent TEXT "
                  "(e.g. --consent 'agreed in person, 2024-05-01'); `facekit people` shows it", file=sys.stderr)
        out.extra["gallery_index"] = refresh_gallery_of(store, emb, args)
    else:
        out.not_found = True
    return out.finish(["name", "photo", "face_id"])


def cmd_people(args, out: Outcome) -> int:
    for p in store_of(args).people(older_than=args.older_than):
        out.rows.append({"name": p.name, "faces": p.faces, "added": _date(p.added), "consent": p.consent,
                         "consent_date": _date(p.consent_at), "last_enrolled": _date(p.last_enrolled),
                         "last_match": _date(p.last_seen), "last_active": _date(p.last_active)})
    if args.older_than is not None:
        out.extra["older_than_days"] = args.older_than
    return out.finish(["name", "faces", "added", "consent", "consent_date", "last_active"])


def cmd_forget(args, out: Outcome) -> int:
    import warnings

    store = store_of(args)
    before = {p for p, *_ in store.derived_files()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        n = store.forget(args.name, progress=not args.quiet)
    for w in caught:
        print(f"facekit: warning: {w.message}", file=sys.stderr)
    after = {p for p, *_ in store.derived_files()}
    out.rows.append({"name": args.name, "faces_removed": n, "derived_files": len(before),
                     "derived_removed": len(before - after)})
    return out.finish(["name", "faces_removed", "derived_files", "derived_removed"])


def cmd_export(args, out: Outcome) -> int:
    store = store_of(args)
    path = store.export(args.path, names=args.names or None, overwrite=True if args.force else None)
    people = [p.name for p in store.people() if not args.names or p.name in args.names]
    out.rows.append({"file": str(path), "people": len(people)})
    return out.finish(["file", "people"])


def cmd_import(args, out: Outcome) -> int:
    report = store_of(args).import_(args.path)
    for name in report.people:
        out.rows.append({"name": name, "faces_added": report.added.get(name, 0)})
    out.extra["already"] = report.already
    return out.finish(["name", "faces_added"])


def cmd_gc(args, out: Outcome) -> int:
    from facekit.store.derived import gc_cache
    from facekit.store.records import default_store_path

    for path, why in gc_cache():
        out.rows.append({"removed": path, "why": why})
    if Path(args.store or default_store_path()).expanduser().is_file():  # pages a forget left in the WAL
        with store_of(args) as store:
            store.checkpoint()
    if not out.rows and not args.json:
        print("facekit gc: nothing to remove")
    return out.finish(["removed", "why"])
