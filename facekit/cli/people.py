"""``facekit enrol | people | forget``: the people in your face store (notebooks 04, 07)."""

from __future__ import annotations

import sys
from pathlib import Path

from facekit.cli.common import Outcome, faces_in, photo_files, store_of


def cmd_enrol(args, out: Outcome) -> int:
    import hashlib

    import numpy as np

    from facekit.core.names import check_name
    from facekit.store.db import PhotoSource

    name = check_name(args.name)
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
        ids = store_of(args).add_faces(name, np.stack(embs), model=emb, sources=sources)
        out.rows += [{"name": name, "photo": s.path, "face_id": i} for s, i in zip(sources, ids)]
    else:
        out.not_found = True
    return out.finish(["name", "photo", "face_id"])


def cmd_people(args, out: Outcome) -> int:
    import time

    for p in store_of(args).people():
        out.rows.append({"name": p.name, "faces": p.faces, "added": time.strftime("%Y-%m-%d %H:%M", time.localtime(p.added)),
                         "consent": p.consent})
    return out.finish(["name", "faces", "added", "consent"])


def cmd_forget(args, out: Outcome) -> int:
    n = store_of(args).forget(args.name)
    out.rows.append({"name": args.name, "faces_removed": n})
    return out.finish(["name", "faces_removed"])
