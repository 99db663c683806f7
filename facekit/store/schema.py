"""The face store's SQLite schema, its creation and its migrations (``PRAGMA user_version``).

Version 2 (issue 25) adds the store's identity and the derived-file table:

- ``meta``: ``store_id`` (random, given once: a store file replaced by another has another id)
  and ``generation`` (bumped in the same transaction as every change of what a derived file can
  hold: people, faces, consent notes: enrol, import, forget; forget also empties the photo cache
  of the person. An index run changes only the photo cache, which no derived file holds, so it
  leaves the generation; files derived from the store record both, :mod:`facekit.core.origin`);
  ``forget_pending`` while a forget has not yet reached every derived file;
- ``derived``: every file facekit derived from the store (saved gallery indexes, identifiers,
  exports), with its kind, model and the generation it was written at, so forget can reach it;
- ``people.consent_at`` (when the consent note was recorded) and ``people.last_seen`` (the last
  time identification named the person: retention, ``facekit people --older-than``);
- ``forgotten``: keyed hashes of forgotten names and photos (:mod:`facekit.store.tombstones`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import tempfile
from pathlib import Path

__all__ = ["SCHEMA_VERSION", "APPLICATION_ID", "create_store_file", "migrate"]

SCHEMA_VERSION = 2
APPLICATION_ID = 0x464B5354  # "FKST": marks the file as a facekit store
_V1 = """
CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, added REAL NOT NULL, consent TEXT);
CREATE TABLE faces (
  id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
  model TEXT NOT NULL, dim INTEGER NOT NULL, embedding BLOB NOT NULL, digest BLOB NOT NULL,
  source TEXT NOT NULL, photo_path TEXT, photo_sha256 TEXT, box TEXT, added REAL NOT NULL);
CREATE INDEX faces_by_model ON faces(model, id);
CREATE UNIQUE INDEX faces_once ON faces(person_id, model, digest);
CREATE UNIQUE INDEX faces_once_per_photo ON faces(person_id, model, photo_sha256) WHERE photo_sha256 IS NOT NULL;
CREATE TABLE photos (
  id INTEGER PRIMARY KEY, path TEXT NOT NULL, model TEXT NOT NULL, size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL, scanned REAL NOT NULL, UNIQUE(path, model));
CREATE INDEX photos_by_hash ON photos(sha256, model);
CREATE TABLE photo_faces (
  photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
  box BLOB NOT NULL, landmarks BLOB NOT NULL, confidence REAL NOT NULL, embedding BLOB NOT NULL,
  person_id INTEGER REFERENCES people(id) ON DELETE SET NULL, PRIMARY KEY (photo_id, idx));
CREATE INDEX photo_faces_by_person ON photo_faces(person_id);
"""
_V2 = """
ALTER TABLE people ADD COLUMN consent_at REAL;
ALTER TABLE people ADD COLUMN last_seen REAL;
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE derived (path TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT, generation INTEGER NOT NULL,
  written REAL NOT NULL);
CREATE TABLE forgotten (key BLOB PRIMARY KEY, person BLOB NOT NULL) WITHOUT ROWID;
"""


def _statements(sql: str) -> list[str]:
    return [s for s in (x.strip() for x in sql.split(";")) if s]


def _v2(cur: sqlite3.Cursor) -> None:
    for stmt in _statements(_V2):
        cur.execute(stmt)
    cur.execute("UPDATE people SET consent_at = added WHERE consent IS NOT NULL")
    cur.execute("INSERT INTO meta (key, value) VALUES ('store_id', ?), ('generation', 0)", (secrets.token_hex(16),))


def create_store_file(path: Path) -> None:
    """A new store appears complete or not at all: the schema is written to a private (0600)
    temporary file, which is then hard-linked into place (a no-op if another process won)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o600)
        con = sqlite3.connect(tmp, isolation_level=None)
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("BEGIN")
        cur = con.cursor()
        for stmt in _statements(_V1):
            cur.execute(stmt)
        _v2(cur)
        con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        con.execute("COMMIT")
        con.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it meanwhile: use theirs
    finally:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp + suffix)


def migrate(con: sqlite3.Connection, version: int) -> None:
    """Bring a store of ``version`` up to :data:`SCHEMA_VERSION`, in one write transaction (a
    second process migrating at the same time finds the work done and changes nothing)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        cur = con.cursor()
        now = cur.execute("PRAGMA user_version").fetchone()[0]
        if now < 2 <= SCHEMA_VERSION and version < 2:
            _v2(cur)
        cur.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.rollback()
        raise
