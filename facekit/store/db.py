"""The face store: your people, their faces and a photo-folder cache in one SQLite file.

Taught in notebooks 04 and 06 (and used by the live recogniser and the ``facekit`` command).
One store is shared by all of them, so enrolling in one never removes anyone enrolled in another.

Where it lives: ``$FACEKIT_STORE`` if set, else ``$XDG_DATA_HOME/facekit/faces.sqlite3``
(``~/.local/share/facekit/faces.sqlite3``): user data, not a cache. Back it up by copying the
file (while no program writes to it, or with ``sqlite3 faces.sqlite3 ".backup copy.sqlite3"``).

How it keeps data: standard-library :mod:`sqlite3` in WAL mode; every write is one
``BEGIN IMMEDIATE`` transaction (a process killed mid-enrolment loses at most what it had not
committed; several processes enrolling at once all keep their people); the file is created 0600
in a 0700 folder; the schema is versioned (``PRAGMA user_version``); deleted rows are zeroed
(``secure_delete``) so :meth:`FaceStore.forget` really forgets.

Tables: ``people`` (checked name, when added, consent note), ``faces`` (person, float32 unit
embedding, model fingerprint, source: a photo's path + sha256 + box, ``"camera"``, ...; time)
and the photo cache ``photos``/``photo_faces`` (path, size, mtime, content sha256, model
fingerprint -> each detected face's box, landmarks, confidence and embedding), which lets a
re-scan of a folder detect and embed only new or changed photos.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from facekit.core.names import check_name
from facekit.store.records import (EmptyStoreError, FaceRecord, Person, PhotoSource, StoreError,
    UnknownPersonError, default_store_path, model_fingerprint, unit_rows)

__all__ = ["FaceStore", "FaceRecord", "PhotoSource", "Person", "StoreError", "UnknownPersonError",
           "EmptyStoreError", "default_store_path", "model_fingerprint", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
APPLICATION_ID = 0x464B5354  # "FKST": marks the file as a facekit store
_SCHEMA = """
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
_FIX_MOVE = ("restore your backup copy of the store, or move this file away (facekit then starts an empty "
             "store) or point FACEKIT_STORE at another file")


class FaceStore:
    """People, faces and a photo cache in one SQLite file (see the module docstring). Taught in
    notebooks 04 and 06. ``path``: the file (default :func:`default_store_path`); ``durable``:
    fsync every commit (survives power loss, not only a killed process). Thread-safe; use as a
    context manager or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike | None = None, *, durable: bool = False, timeout: float = 30.0):
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        self.durable, self._timeout = bool(durable), float(timeout)
        self._lock = threading.RLock()
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a folder, not a store file. Fix: set FACEKIT_STORE to a file "
                             f"path such as {self.path / 'faces.sqlite3'}")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self.path.exists():
                self._create()
            self._con = sqlite3.connect(self.path, timeout=timeout, isolation_level=None,
                                        check_same_thread=False)
        except PermissionError as exc:
            raise StoreError(f"{self.path}: permission denied ({exc.strerror}). Fix: make it writable by you, "
                             "or set FACEKIT_STORE to a file in a folder you own") from None
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open the store ({exc}). Fix: {_FIX_MOVE}") from None
        try:
            self._setup()
        except StoreError:
            self._con.close()
            raise
        except sqlite3.DatabaseError as exc:
            self._con.close()
            raise StoreError(f"{self.path}: not a facekit store, or damaged ({exc}). Fix: {_FIX_MOVE}") from None

    # -- connection -------------------------------------------------------------------------
    def _create(self) -> None:
        """A new store appears complete or not at all: the schema is written to a private (0600)
        temporary file, which is then hard-linked into place (a no-op if another process won)."""
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".new", dir=self.path.parent)
        os.close(fd)
        try:
            os.chmod(tmp, 0o600)
            con = sqlite3.connect(tmp, isolation_level=None)
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("BEGIN")
            for stmt in filter(str.strip, _SCHEMA.split(";")):
                con.execute(stmt)
            con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            con.execute("COMMIT")
            con.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another process created it meanwhile: use theirs
        finally:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp + suffix)

    def _setup(self) -> None:
        c = self._con
        # checks first, on a read-only connection: a damaged or foreign file is never written to
        ro = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=self._timeout)
        try:
            tables = ro.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            app = ro.execute("PRAGMA application_id").fetchone()[0]
            ver = ro.execute("PRAGMA user_version").fetchone()[0]
        finally:
            ro.close()
        if tables == 0:  # new stores are created complete, so this file was emptied or truncated
            raise StoreError(f"{self.path}: holds no faces and no facekit tables ({self.path.stat().st_size} "
                             "bytes): it was emptied or truncated. Fix: restore your backup copy of the store, "
                             "or delete this file to start an empty store")
        if app != APPLICATION_ID:
            raise StoreError(f"{self.path}: is an SQLite database but not a facekit store. Fix: point "
                             "FACEKIT_STORE at another file (facekit will not write into this one)")
        if ver > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: written by a newer facekit (store version {ver}, this one "
                             f"reads {SCHEMA_VERSION}). Fix: upgrade facekit (pip install -U facekit)")
        c.execute("PRAGMA foreign_keys = ON")
        c.execute("PRAGMA secure_delete = ON")
        # WAL + NORMAL: a commit survives the process being killed (the fault campaign's kill -9);
        # durable=True (FULL) also fsyncs every commit, surviving power loss (~5 ms more per write)
        c.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
        if c.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            warnings.warn(f"{self.path}: WAL mode unavailable on this file system; using a rollback journal")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT; ROLLBACK on any error)."""
        with self._lock:
            cur = self._con.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreError(f"{self.path}: could not start a write ({exc}); another program holds the "
                                 "store. Fix: retry, or close the other program") from None
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path}: damaged store ({exc}). Fix: {_FIX_MOVE}") from None
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                if self._con.in_transaction:
                    self._con.rollback()
                raise
            finally:
                cur.close()

    def _read(self, sql: str, args: Sequence = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._con.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path}: damaged store, a read failed ({exc}). Fix: {_FIX_MOVE}") from None

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> "FaceStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FaceStore({str(self.path)!r})"

    # -- people -----------------------------------------------------------------------------
    def _person_id(self, cur: sqlite3.Cursor, name: str, create: bool, consent: str | None = None) -> int:
        row = cur.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
        if row:
            if consent is not None:
                cur.execute("UPDATE people SET consent = ? WHERE id = ?", (consent, row[0]))
            return int(row[0])
        if not create:
            raise UnknownPersonError(f"{name!r} is not enrolled in {self.path}. Fix: check the spelling "
                                     "(store.people() lists everyone)")
        cur.execute("INSERT INTO people (name, added, consent) VALUES (?, ?, ?)", (name, time.time(), consent))
        return int(cur.lastrowid)

    def add_person(self, name: str, consent: str | None = None) -> str:
        """Add ``name`` (checked, :func:`facekit.core.names.check_name`) if new; set its consent note if
        given. Returns the canonical name."""
        name = check_name(name)
        if consent is not None and not isinstance(consent, str):
            raise ValueError(f"consent must be text (e.g. 'agreed in person, 2024-05-01'), got {consent!r}")
        with self._tx() as cur:
            self._person_id(cur, name, True, consent)
        return name

    def people(self) -> list[Person]:
        """Everyone enrolled, sorted by name, with their face counts (all models)."""
        rows = self._read("SELECT p.name, p.added, p.consent, count(f.id) FROM people p "
                          "LEFT JOIN faces f ON f.person_id = p.id GROUP BY p.id ORDER BY p.name")
        return [Person(n, float(a), c, int(k)) for n, a, c, k in rows]

    @property
    def names(self) -> list[str]:
        """Enrolled names, sorted."""
        return [p.name for p in self.people()]

    def forget(self, name: str) -> int:
        """Remove ``name``, all their faces and every cached photo holding them (photos they were
        enrolled from, or where a cached face was attributed to them), in one transaction; the
        deleted bytes are zeroed. Returns the number of faces removed. Unknown names raise
        :class:`UnknownPersonError`."""
        name = check_name(name)
        with self._tx() as cur:
            pid = self._person_id(cur, name, False)
            n = cur.execute("SELECT count(*) FROM faces WHERE person_id = ?", (pid,)).fetchone()[0]
            cur.execute("DELETE FROM photos WHERE id IN (SELECT photo_id FROM photo_faces WHERE person_id = ?) "
                        "OR sha256 IN (SELECT photo_sha256 FROM faces WHERE person_id = ? AND photo_sha256 "
                        "IS NOT NULL)", (pid, pid))
            cur.execute("DELETE FROM faces WHERE person_id = ?", (pid,))
            cur.execute("DELETE FROM people WHERE id = ?", (pid,))
        with self._lock:  # move the zeroed pages out of the WAL into the main file
            self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(n)

    # -- faces ------------------------------------------------------------------------------
    def add_faces(self, name: str, embeddings: np.ndarray, *, model, sources=None,
                  consent: str | None = None) -> list[int]:
        """Enrol faces of ``name`` (added if new): ``embeddings`` (N, d) float (renormalised; NaN,
        inf, zero rows refused), ``model`` an :class:`~facekit.embedding.embedder.Embedder`, registry name or
        fingerprint (:func:`model_fingerprint`), ``sources``: None, ``"camera"`` (or another
        word), or N items each a :class:`PhotoSource` or word. One transaction. The same face
        (same embedding, or same photo) is stored once per person and model. Returns the N ids."""
        name, fp = check_name(name), model_fingerprint(model)
        x = unit_rows(embeddings, None, f"add_faces({name!r})")
        if sources is None or isinstance(sources, str):
            sources = [sources or "api"] * len(x)
        if len(sources) != len(x):
            raise ValueError(f"add_faces({name!r}): {len(x)} embeddings but {len(sources)} sources")
        now, ids = time.time(), []
        with self._tx() as cur:
            row = cur.execute("SELECT dim FROM faces WHERE model = ? LIMIT 1", (fp,)).fetchone()
            if row and row[0] != x.shape[1]:
                raise ValueError(f"add_faces({name!r}): {x.shape[1]}-D embeddings, but the store holds {row[0]}-D "
                                 f"ones for model {fp!r}. Fix: embed with that model")
            pid = self._person_id(cur, name, True, consent)
            for e, src in zip(x, sources):
                blob = e.tobytes()
                dig = hashlib.blake2b(blob, digest_size=16).digest()
                if isinstance(src, PhotoSource):
                    box = None if src.box is None else "[" + ",".join(f"{float(v):.3f}" for v in src.box) + "]"
                    vals = ("photo", str(src.path), str(src.sha256), box)
                elif isinstance(src, str) and src.isidentifier():
                    vals = (src, None, None, None)
                else:
                    raise ValueError(f"add_faces: source {src!r} is neither a PhotoSource nor a word like 'camera'")
                cur.execute("INSERT OR IGNORE INTO faces (person_id, model, dim, embedding, digest, source, "
                            "photo_path, photo_sha256, box, added) VALUES (?,?,?,?,?,?,?,?,?,?)",
                            (pid, fp, x.shape[1], blob, dig, *vals, now))
                if cur.rowcount == 1:
                    ids.append(int(cur.lastrowid))
                else:
                    row = cur.execute("SELECT id FROM faces WHERE person_id = ? AND model = ? AND (digest = ? "
                                      "OR photo_sha256 = ?)", (pid, fp, dig, vals[2])).fetchone()
                    ids.append(int(row[0]))
        return ids

    def models(self) -> dict[str, int]:
        """``{model fingerprint: number of faces}``."""
        return {m: int(n) for m, n in self._read("SELECT model, count(*) FROM faces GROUP BY model")}

    def embeddings(self, model=None) -> tuple[np.ndarray, list[str], np.ndarray]:
        """All faces of ``model``: ``(X float32 (N, d) unit rows, names (N,), face ids int64 (N,))``,
        oldest first. Rows that fail their checks (damaged bytes: wrong length, NaN, not unit) are
        left out with a warning naming them, never used."""
        fp = model_fingerprint(model)
        people = dict(self._read("SELECT id, name FROM people"))
        rows = self._read("SELECT id, person_id, embedding FROM faces WHERE model = ? ORDER BY id", (fp,))
        if not rows:
            return np.zeros((0, 0), np.float32), [], np.zeros(0, np.int64)
        ids, pids, blobs = zip(*rows)
        d = int(self._read("SELECT dim FROM faces WHERE model = ? LIMIT 1", (fp,))[0][0])
        ok = np.fromiter(map(len, blobs), np.int64, len(rows)) == 4 * d  # (a non-bytes value has no len)
        if not ok.all():
            blobs = [b if k else b"\0" * (4 * d) for b, k in zip(blobs, ok)]
        x = np.frombuffer(b"".join(blobs), "<f4").reshape(len(rows), d)
        n = np.einsum("ij,ij->i", x, x, dtype=np.float64)
        ok &= np.abs(n - 1) < 2e-3  # NaN fails too
        names = [people[p] for p in pids]
        ids_arr = np.asarray(ids, np.int64)
        if not ok.all():
            bad = ids_arr[~ok]
            warnings.warn(f"{self.path}: {len(bad)} stored face(s) are damaged and were left out (face ids "
                          f"{bad[:10].tolist()}, people {sorted({names[i] for i in np.flatnonzero(~ok)})[:5]}). "
                          "Fix: forget and re-enrol those people, or restore a backup of the store")
            x, ids_arr, names = x[ok], ids_arr[ok], [v for v, k in zip(names, ok) if k]
        return x, list(names), ids_arr

    def identifier(self, model=None, *, threshold: float | None = None, allow_empty: bool = False, **kw):
        """A :class:`facekit.recognition.identify.FaceIdentifier` fitted on every stored face of ``model``
        (refit after :meth:`forget`). ``threshold`` None: the model's calibrated "unknown" cut
        (:func:`facekit.models.registry.model_spec`). No faces: :class:`EmptyStoreError`, or None with
        ``allow_empty=True`` (the live view starts empty)."""
        from facekit.recognition.identify import FaceIdentifier, default_threshold

        x, names, _ = self.embeddings(model)
        if not len(x):
            if allow_empty:
                return None
            raise EmptyStoreError(f"{self.path} holds no faces for model {model_fingerprint(model)!r}. "
                                  "Fix: enrol someone first (notebook 04, 06 or `facekit enrol`)")
        fp = model_fingerprint(model)
        if threshold is None:
            threshold = default_threshold(fp)
        return FaceIdentifier(threshold=threshold, model=fp, **kw).fit(x, names)

    # -- photo cache ------------------------------------------------------------------------
    def cached_photo(self, path: str | os.PathLike, size: int, mtime_ns: int, model=None) -> list[FaceRecord] | None:
        """The cached faces of photo ``path`` if it was scanned with ``model`` at this ``size`` and
        ``mtime_ns`` (``[]``: scanned, no face); None when it must be (re)scanned."""
        rows = self._read("SELECT id FROM photos WHERE path = ? AND model = ? AND size = ? AND mtime_ns = ?",
                          (str(path), model_fingerprint(model), int(size), int(mtime_ns)))
        return self._records(rows[0][0]) if rows else None

    def cached_content(self, sha256: str, model=None) -> list[FaceRecord] | None:
        """Cached faces of any photo with this content hash (a moved, copied or touched file)."""
        rows = self._read("SELECT id FROM photos WHERE sha256 = ? AND model = ? LIMIT 1",
                          (str(sha256), model_fingerprint(model)))
        return self._records(rows[0][0]) if rows else None

    def photo_index(self, model=None) -> dict[str, tuple[int, int, str]]:
        """``{path: (size, mtime_ns, sha256)}`` of every cached photo of ``model`` (fast re-scans)."""
        rows = self._read("SELECT path, size, mtime_ns, sha256 FROM photos WHERE model = ?", (model_fingerprint(model),))
        return {p: (int(s), int(m), h) for p, s, m, h in rows}

    def photo_faces(self, model=None) -> tuple[np.ndarray, list[str], np.ndarray]:
        """Every cached photo face of ``model`` (``facekit index``; notebook 07): ``(X float32 (N, d)
        unit rows, photo paths (N,), boxes float32 (N, 4) px)``, by path then face. Damaged rows
        (wrong length, NaN, not unit) are left out with a warning naming the photos, never used."""
        from statistics import mode

        rows = self._read("SELECT p.path, f.box, f.embedding FROM photo_faces f JOIN photos p ON p.id = f.photo_id "
                          "WHERE p.model = ? ORDER BY p.path, f.idx", (model_fingerprint(model),))
        d = mode(len(r[2]) for r in rows) // 4 if rows else 0
        good = [r for r in rows if len(r[1]) == 16 and len(r[2]) == 4 * d
                and abs(float(np.einsum("i,i->", e := np.frombuffer(r[2], "<f4"), e)) - 1) < 2e-3]
        if len(good) < len(rows):
            bad = sorted({r[0] for r in rows} - {r[0] for r in good})
            warnings.warn(f"{self.path}: {len(rows) - len(good)} cached photo face(s) are damaged and were left out "
                          f"(photos {bad[:5]}). Fix: `facekit index` those photos again after forget_photo")
        x = np.frombuffer(b"".join(r[2] for r in good), "<f4").reshape(len(good), d).copy()
        boxes = np.frombuffer(b"".join(r[1] for r in good), "<f4").reshape(len(good), 4).copy()
        return x, [r[0] for r in good], boxes

    def _records(self, photo_id: int) -> list[FaceRecord]:
        rows = self._read("SELECT f.box, f.landmarks, f.confidence, f.embedding, p.name FROM photo_faces f "
                          "LEFT JOIN people p ON p.id = f.person_id WHERE f.photo_id = ? ORDER BY f.idx", (photo_id,))
        out = []
        for box, lm, conf, emb, person in rows:
            e = np.frombuffer(emb, "<f4")
            if len(box) != 16 or len(lm) != 40 or not np.isfinite(e).all() or abs(float(e @ e) - 1) > 2e-3:
                return None  # damaged cache row: rescan the photo
            out.append(FaceRecord(np.frombuffer(box, "<f4").copy(), np.frombuffer(lm, "<f4").reshape(5, 2).copy(),
                                  float(conf), e.copy(), person))
        return out

    def put_photo(self, path: str | os.PathLike, size: int, mtime_ns: int, sha256: str, model,
                  records: Sequence[FaceRecord]) -> None:
        """Cache the faces of photo ``path`` (replacing an older entry for it), one transaction.
        A record's ``person`` must be enrolled already (:class:`UnknownPersonError`)."""
        fp = model_fingerprint(model)
        rows = []
        for i, r in enumerate(records):
            box = np.asarray(r.box, "<f4").reshape(4)
            lm = np.asarray(r.landmarks, "<f4").reshape(5, 2)
            e = unit_rows(r.embedding, None, f"put_photo({str(path)!r}) face {i}")[0]
            if not (np.isfinite(box).all() and np.isfinite(lm).all() and 0 <= float(r.confidence) <= 1):
                raise ValueError(f"put_photo({str(path)!r}) face {i}: box, landmarks or confidence not finite "
                                 "or out of range. Fix: pass the detector's Face values")
            rows.append((i, box.tobytes(), lm.tobytes(), float(r.confidence), e.tobytes(),
                         None if r.person is None else check_name(r.person)))
        with self._tx() as cur:
            cur.execute("DELETE FROM photos WHERE path = ? AND model = ?", (str(path), fp))
            cur.execute("INSERT INTO photos (path, model, size, mtime_ns, sha256, scanned) VALUES (?,?,?,?,?,?)",
                        (str(path), fp, int(size), int(mtime_ns), str(sha256), time.time()))
            pid = cur.lastrowid
            for i, box, lm, conf, emb, person in rows:
                who = None if person is None else self._person_id(cur, person, False)
                cur.execute("INSERT INTO photo_faces VALUES (?,?,?,?,?,?,?)", (pid, i, box, lm, conf, emb, who))

    def forget_photo(self, path: str | os.PathLike, model=None) -> int:
        """Drop the cache entry of ``path`` (all models if ``model`` is None). Returns rows removed."""
        with self._tx() as cur:
            if model is None:
                cur.execute("DELETE FROM photos WHERE path = ?", (str(path),))
            else:
                cur.execute("DELETE FROM photos WHERE path = ? AND model = ?", (str(path), model_fingerprint(model)))
            return int(cur.rowcount)

    # -- whole-store operations (facekit.store.enrol, facekit.core.exchange) ------------------------------
    def check(self) -> list[str]:
        """SQLite's full integrity check: ``[]`` when the file is sound, else the problems found."""
        rows = self._read("PRAGMA integrity_check")
        return [] if rows == [("ok",)] else [r[0] for r in rows]

    def enrol_folder(self, root: str | os.PathLike, *, model=None, **kw):
        """Enrol ``root/<name>/*.jpg`` (see :func:`facekit.store.enrol.enrol_folder`)."""
        from facekit.store.enrol import enrol_folder

        return enrol_folder(self, root, model=model, **kw)

    def export(self, path: str | os.PathLike, names: Sequence[str] | None = None, *, overwrite: bool = False) -> Path:
        """Write people and faces to a shareable ``.npz`` (see :func:`facekit.store.enrol.export_store`)."""
        from facekit.store.enrol import export_store

        return export_store(self, path, names, overwrite=overwrite)

    def import_(self, path: str | os.PathLike):
        """Add the people and faces of an exported file, checked (see :func:`facekit.store.enrol.import_store`)."""
        from facekit.store.enrol import import_store

        return import_store(self, path)

    import_file = import_
