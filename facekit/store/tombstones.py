"""What a forget leaves behind so that the person does not come back through the photo cache.

``FaceStore.forget`` removes every cached photo of the person: those they were enrolled from,
those where a cached face was attributed to them, and those under a folder named after them.
A ``facekit index`` run that read such a photo before the forget committed, or one run later
over the same folder, would cache their face again (unnamed, but theirs, and under a path that
names them). So the forget also records *tombstones* in the table ``forgotten``: a keyed hash
(BLAKE2b with a random key of this store, ``meta.tomb_key``) of the person's name and of the
content (sha256) of each of those photos. :meth:`facekit.store.db.FaceStore.put_photo` does not
cache a photo whose content or one of whose folders matches a tombstone (the index reports it);
enrolling the person again removes their tombstones.

The name itself is not kept: only its keyed hash, with which someone holding the store file can
check whether a name they guess was forgotten, and nothing more (the price of honouring a
forget across later runs, as a suppression list does).
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from pathlib import PurePosixPath

__all__ = ["tomb_key", "person_key", "bury", "buried", "unbury"]


def tomb_key(cur: sqlite3.Cursor) -> bytes:
    """This store's secret hashing key (made on first use, in the caller's transaction)."""
    row = cur.execute("SELECT value FROM meta WHERE key = 'tomb_key'").fetchone()
    if row:
        return bytes.fromhex(row[0])
    key = secrets.token_hex(16)
    cur.execute("INSERT INTO meta (key, value) VALUES ('tomb_key', ?)", (key,))
    return bytes.fromhex(key)


def _h(key: bytes, what: str) -> bytes:
    return hashlib.blake2b(what.encode(), key=key, digest_size=16).digest()


def person_key(cur: sqlite3.Cursor, name: str) -> bytes:
    return _h(tomb_key(cur), f"name:{name}")


def bury(cur: sqlite3.Cursor, name: str, photo_sha256s) -> None:
    """Record the tombstones of ``name`` and of the photos (content sha256) forgotten with them."""
    key = tomb_key(cur)
    who = _h(key, f"name:{name}")
    rows = [(who, who)] + [(_h(key, f"photo:{s}"), who) for s in sorted({s for s in photo_sha256s if s})]
    cur.executemany("INSERT OR IGNORE INTO forgotten (key, person) VALUES (?, ?)", rows)


def buried(cur: sqlite3.Cursor, path: str, sha256: str) -> bool:
    """Whether the photo at ``path`` with content ``sha256`` belongs to a forgotten person: its
    content was forgotten, or one of its folders is named after a forgotten person."""
    if cur.execute("SELECT 1 FROM forgotten LIMIT 1").fetchone() is None:
        return False
    key = tomb_key(cur)
    folders = PurePosixPath(str(path).replace("\\", "/")).parent.parts
    keys = [_h(key, f"photo:{sha256}")] + [_h(key, f"name:{p}") for p in folders if p and p != "/"]
    marks = ",".join("?" * len(keys))
    return cur.execute(f"SELECT 1 FROM forgotten WHERE key IN ({marks}) LIMIT 1", keys).fetchone() is not None


def unbury(cur: sqlite3.Cursor, name: str) -> None:
    """Enrolled again: ``name``'s tombstones go."""
    if cur.execute("SELECT 1 FROM forgotten LIMIT 1").fetchone() is not None:
        cur.execute("DELETE FROM forgotten WHERE person = ?", (person_key(cur, name),))
