"""The face store: your people, their faces and a photo-folder cache in one SQLite file.

Taught in notebooks 04 and 06 (and used by the live recogniser and the ``facekit`` command).
One store is shared by all of them, so enrolling in one never removes anyone enrolled in another.

Where it lives: ``$FACEKIT_STORE`` if set, else ``$XDG_DATA_HOME/facekit/faces.sqlite3``
(``~/.local/share/facekit/faces.sqlite3``): user data, not a cache. Back it up by copying the
file (while no program has it open, or with ``sqlite3 faces.sqlite3 ".backup copy.sqlite3"``).

How it keeps data: standard-library :mod:`sqlite3` in WAL mode; every write is one
``BEGIN IMMEDIATE`` transaction (a process killed mid-enrolment loses at most what it had not
committed; several processes enrolling at once all keep their people); the file is created 0600
in a 0700 folder; the schema is versioned (``PRAGMA user_version``, :mod:`facekit.store.schema`);
deleted rows are zeroed (``secure_delete``) and the WAL is checkpointed and truncated after a
forget, so :meth:`FaceStore.forget` leaves no byte of the person in the file.

Tables: ``people`` (checked name, when added, consent note and its date, last match),
``faces`` (person, float32 unit embedding, model fingerprint, source: a photo's path + sha256 +
box, ``"camera"``, ...; time), the photo cache ``photos``/``photo_faces``
(:mod:`facekit.store.photo_cache`), ``meta`` (the store's id and generation) and ``derived``
(the files facekit derived from the store: :mod:`facekit.store.derived`, reached by forget).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from facekit.core.names import check_name
from facekit.core.origin import Origin
from facekit.store.photo_cache import PhotoCache
from facekit.store.records import (EmptyStoreError, FaceRecord, Person, PhotoSource, StoreError,
    UnknownPersonError, default_store_path, model_fingerprint, unit_rows)
from facekit.store.schema import APPLICATION_ID, SCHEMA_VERSION, create_store_file, migrate
from facekit.store.tombstones import bury, unbury

__all__ = ["FaceStore", "FaceRecord", "PhotoSource", "Person", "StoreError", "UnknownPersonError",
           "EmptyStoreError", "default_store_path", "model_fingerprint", "SCHEMA_VERSION"]

_FIX_MOVE = ("restore your backup copy of the store, or move this file away (facekit then starts an empty "
             "store) or point FACEKIT_STORE at another file")


class FaceStore(PhotoCache):
    """People, faces and a photo cache in one SQLite file (see the module docstring). Taught in
    notebooks 04 and 06. ``path``: the file (default :func:`default_store_path`); ``durable``:
    fsync every commit (survives power loss, not only a killed process). Thread-safe; use as a
    context manager or call :meth:`close`. ``store_id`` and :attr:`generation` tie the files
    derived from it to it (:mod:`facekit.core.origin`)."""

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
        create_store_file(self.path)

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
        if ver < SCHEMA_VERSION:
            try:
                migrate(c, ver)
            except sqlite3.OperationalError as exc:
                raise StoreError(f"{self.path}: written by an older facekit (store version {ver}) and cannot be "
                                 f"upgraded to version {SCHEMA_VERSION} here ({exc}). Fix: open it once where the "
                                 "file and its folder are writable") from None
        # WAL + NORMAL: a commit survives the process being killed (the fault campaign's kill -9);
        # durable=True (FULL) also fsyncs every commit, surviving power loss (~5 ms more per write)
        c.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
        if c.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            warnings.warn(f"{self.path}: WAL mode unavailable on this file system; using a rollback journal")
        self.store_id = str(c.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()[0])
        if c.execute("SELECT 1 FROM meta WHERE key = 'forget_pending'").fetchone():
            from facekit.store.derived import finish_pending_forget

            try:  # a forget was interrupted before it reached every derived file
                finish_pending_forget(self)
            except (StoreError, OSError) as exc:
                warnings.warn(f"{self.path}: an interrupted forget could not be completed now ({exc}); it will "
                              "be when the store is next opened for writing")

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

    # -- identity and generation (files derived from the store record both) ------------------
    @property
    def generation(self) -> int:
        """The store's generation: bumped by every change of its people or faces (enrol, import,
        consent, forget; not by the photo cache, which no derived file holds)."""
        return int(self._read("SELECT value FROM meta WHERE key = 'generation'")[0][0])

    def origin(self) -> Origin:
        """This store's :class:`~facekit.core.origin.Origin` now (id, generation, absolute path)."""
        return Origin(self.store_id, self.generation, str(self.path.resolve()))

    @staticmethod
    def _bump(cur: sqlite3.Cursor) -> None:
        cur.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")

    def derived_files(self) -> list[tuple[str, str, str | None, int]]:
        """``(path, kind, model, generation)`` of every file facekit derived from this store and
        registered (:func:`facekit.core.origin.derived_write`): what :meth:`forget` reaches."""
        return [(p, k, m, int(g)) for p, k, m, g in
                self._read("SELECT path, kind, model, generation FROM derived ORDER BY path")]

    def unregister_derived(self, path: str | os.PathLike) -> None:  # gone, or no longer this store's file
        with self._tx() as cur:
            cur.execute("DELETE FROM derived WHERE path = ?", (str(Path(path).resolve()),))

    # -- people -----------------------------------------------------------------------------
    def _person_id(self, cur: sqlite3.Cursor, name: str, create: bool, consent: str | None = None) -> int:
        row = cur.execute("SELECT id, consent FROM people WHERE name = ?", (name,)).fetchone()
        if row:
            if consent is not None and consent != row[1]:
                cur.execute("UPDATE people SET consent = ?, consent_at = ? WHERE id = ?", (consent, time.time(), row[0]))
                self._bump(cur)
            return int(row[0])
        if not create:
            raise UnknownPersonError(f"{name!r} is not enrolled in {self.path}. Fix: check the spelling "
                                     "(store.people() lists everyone)")
        now = time.time()
        unbury(cur, name)  # enrolled again: their tombstones go
        cur.execute("INSERT INTO people (name, added, consent, consent_at) VALUES (?, ?, ?, ?)",
                    (name, now, consent, None if consent is None else now))
        self._bump(cur)
        return int(cur.lastrowid)

    @staticmethod
    def _check_consent(consent) -> str | None:
        if consent is not None and not (isinstance(consent, str) and consent.strip()):
            raise ValueError(f"consent must be a note in words (e.g. 'agreed in person, 2024-05-01'), got {consent!r}")
        return None if consent is None else consent.strip()[:500]

    def add_person(self, name: str, consent: str | None = None) -> str:
        """Add ``name`` (checked, :func:`facekit.core.names.check_name`) if new; set its consent note
        (and its date) if given. Returns the canonical name."""
        name, consent = check_name(name), self._check_consent(consent)
        with self._tx() as cur:
            self._person_id(cur, name, True, consent)
        return name

    def people(self, older_than: float | None = None) -> list[Person]:
        """Everyone enrolled, sorted by name, with their face counts (all models), consent note and
        its date, last enrolment and last match. ``older_than`` (days): only those whose last
        enrolment or match is older than that (retention: who has not been seen for a while)."""
        rows = self._read("SELECT p.name, p.added, p.consent, count(f.id), p.consent_at, max(f.added), p.last_seen "
                          "FROM people p LEFT JOIN faces f ON f.person_id = p.id GROUP BY p.id ORDER BY p.name")
        out = [Person(n, float(a), c, int(k), ca, la, ls) for n, a, c, k, ca, la, ls in rows]
        if older_than is not None:
            days = float(older_than)
            if not days >= 0:
                raise ValueError(f"older_than must be a number of days >= 0, got {older_than!r}")
            out = [p for p in out if p.last_active < time.time() - 86400 * days]
        return out

    def record_matches(self, names: Sequence[str]) -> None:
        """Note that identification named ``names`` now (``people.last_seen``; one small
        transaction; the generation is unchanged). Unknown names are ignored."""
        names = sorted({n for n in names if isinstance(n, str)})
        if names:
            with self._tx() as cur:
                cur.executemany("UPDATE people SET last_seen = ? WHERE name = ?", [(time.time(), n) for n in names])

    names = property(lambda self: [p.name for p in self.people()], doc="Enrolled names, sorted.")

    def forget(self, name: str, *, progress: bool = False) -> int:
        """Remove ``name``, all their faces and every cached photo holding them (photos they were
        enrolled from, where a cached face was attributed to them, or under a folder named after
        them) in one transaction; the deleted bytes are zeroed and the WAL checkpointed and
        truncated. Keyed hashes of their name and photos stay (:mod:`facekit.store.tombstones`), so
        an index run does not cache their photos again. Then every derived file facekit knows of
        (saved gallery indexes, identifiers, exports: :mod:`facekit.store.forget`) is rebuilt
        without them or removed; a forget stopped before that is completed when the store is next
        opened. Returns the number of faces removed. Unknown names: :class:`UnknownPersonError`."""
        name = check_name(name)
        with self._tx() as cur:
            pid = self._person_id(cur, name, False)
            gone: dict[str, list[bytes]] = {}
            for model, emb in cur.execute("SELECT model, embedding FROM faces WHERE person_id = ?", (pid,)):
                gone.setdefault(model, []).append(bytes(emb))
            theirs = ("id IN (SELECT photo_id FROM photo_faces WHERE person_id = ?) OR sha256 IN (SELECT "
                      "photo_sha256 FROM faces WHERE person_id = ? AND photo_sha256 IS NOT NULL) OR instr(path, ?) > 0")
            args = (pid, pid, f"/{name}/")
            shas = [r[0] for r in cur.execute(f"SELECT sha256 FROM photos WHERE {theirs}", args)]
            shas += [r[0] for r in cur.execute("SELECT photo_sha256 FROM faces WHERE person_id = ?", (pid,))]
            bury(cur, name, shas)  # so that an index run does not cache their photos again
            cur.execute(f"DELETE FROM photos WHERE {theirs}", args)
            cur.execute("DELETE FROM faces WHERE person_id = ?", (pid,))
            cur.execute("DELETE FROM people WHERE id = ?", (pid,))
            self._bump(cur)
            cur.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('forget_pending', 1)")
        self.checkpoint()
        from facekit.store.forget import reach_derived

        reach_derived(self, {m: np.frombuffer(b"".join(v), "<f4").reshape(len(v), -1) for m, v in gone.items()},
                      progress=progress)
        with self._tx() as cur:
            cur.execute("DELETE FROM meta WHERE key = 'forget_pending'")
        self.checkpoint()
        return int(sum(len(v) for v in gone.values()))

    def checkpoint(self, tries: int = 50) -> None:
        """Move every page out of the WAL into the main file and truncate the WAL (zeroed pages
        included), retrying while another connection reads; warns if it could not."""
        for _ in range(tries):
            with self._lock:  # a short busy wait per try (TRUNCATE waits for readers to move on)
                self._con.execute("PRAGMA busy_timeout = 100")
                try:
                    busy = self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                finally:
                    self._con.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            if not busy:
                return
            time.sleep(0.1)
        warnings.warn(f"{self.path}: another program keeps the store open, so its write-ahead log still holds "
                      "deleted pages until it closes. Fix: close the other program, then run `facekit gc`")

    # -- faces ------------------------------------------------------------------------------
    def add_faces(self, name: str, embeddings: np.ndarray, *, model, sources=None,
                  consent: str | None = None) -> list[int]:
        """Enrol faces of ``name`` (added if new): ``embeddings`` (N, d) float (renormalised; NaN,
        inf, zero rows refused), ``model`` an :class:`~facekit.embedding.embedder.Embedder`, registry name or
        fingerprint (:func:`model_fingerprint`), ``sources``: None, ``"camera"`` (or another
        word), or N items each a :class:`PhotoSource` or word. One transaction. The same face
        (same embedding, or same photo) is stored once per person and model. Returns the N ids."""
        name, fp = check_name(name), model_fingerprint(model)
        consent = self._check_consent(consent)
        x = unit_rows(embeddings, None, f"add_faces({name!r})")
        if sources is None or isinstance(sources, str):
            sources = [sources or "api"] * len(x)
        if len(sources) != len(x):
            raise ValueError(f"add_faces({name!r}): {len(x)} embeddings but {len(sources)} sources")
        now, ids, added = time.time(), [], 0
        with self._tx() as cur:
            row = cur.execute("SELECT dim FROM faces WHERE model = ? LIMIT 1", (fp,)).fetchone()
            if row and row[0] != x.shape[1]:
                raise ValueError(f"add_faces({name!r}): {x.shape[1]}-D embeddings, but the store {self.path} holds "
                                 f"{row[0]}-D ones for model {fp!r}. Fix: embed with that model (or pass the model "
                                 "that made these embeddings as model=)")
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
                    added += 1
                else:
                    row = cur.execute("SELECT id FROM faces WHERE person_id = ? AND model = ? AND (digest = ? "
                                      "OR photo_sha256 = ?)", (pid, fp, dig, vals[2])).fetchone()
                    ids.append(int(row[0]))
            if added:
                self._bump(cur)
        return ids

    def models(self) -> dict[str, int]:
        """``{model fingerprint: number of faces}``."""
        return {m: int(n) for m, n in self._read("SELECT model, count(*) FROM faces GROUP BY model")}

    def model_dims(self) -> dict[str, int]:
        """``{model fingerprint: embedding dimensions}`` of the faces stored."""
        return {m: int(d) for m, d in self._read("SELECT model, min(dim) FROM faces GROUP BY model")}

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

    def snapshot(self, model=None) -> tuple[np.ndarray, list[str], np.ndarray, int]:
        """:meth:`embeddings` and the generation they are of (read again until no write came
        between), so a file derived from them can record its :class:`~facekit.core.origin.Origin`."""
        for _ in range(20):
            gen = self.generation
            x, names, ids = self.embeddings(model)
            if self.generation == gen:
                return x, names, ids, gen
        raise StoreError(f"{self.path}: the store kept changing while being read. Fix: retry when the other "
                         "program has finished")

    def identifier(self, model=None, *, threshold: float | None = None, allow_empty: bool = False, **kw):
        """A :class:`facekit.recognition.identify.FaceIdentifier` fitted on every stored face of ``model``
        (refit after :meth:`forget`). ``threshold`` None: the model's calibrated "unknown" cut
        (:func:`facekit.models.registry.model_spec`). No faces: :class:`EmptyStoreError`, or None with
        ``allow_empty=True`` (the live view starts empty). It records this store as its origin:
        saved, it is a derived file that :meth:`forget` reaches (:mod:`facekit.store.derived`)."""
        from facekit.recognition.identify import FaceIdentifier, default_threshold

        x, names, _, gen = self.snapshot(model)
        if not len(x):
            if allow_empty:
                return None
            raise EmptyStoreError(f"{self.path} holds no faces for model {model_fingerprint(model)!r}. "
                                  "Fix: enrol someone first (notebook 04, 06 or `facekit enrol`)")
        fp = model_fingerprint(model)
        if threshold is None:
            threshold = default_threshold(fp)
        ident = FaceIdentifier(threshold=threshold, model=fp, **kw).fit(x, names)
        ident.origin_ = Origin(self.store_id, gen, str(self.path.resolve()))
        return ident

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
