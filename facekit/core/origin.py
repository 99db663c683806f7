"""Where a derived file came from: the face store's id and generation, checked before any use.

DESIGN.md, "Derived files". Every file facekit derives from a face store (a saved gallery index,
an identifier fitted from the store, an export) records an :class:`Origin`: the store's id (a
random id the store gets when it is created; a store file replaced by another has another id), its
path, and its *generation* (a counter the store bumps in the same transaction as every change of
what a derived file can hold: enrol, import, consent, forget). A file whose store is gone, was
replaced, or has changed since is *stale*: facekit rebuilds it from the store or removes it, and
never reads what it holds (:class:`StaleFileError` where it can do neither). ``FaceStore.forget`` rebuilds or removes every
derived file it knows of, so a forgotten person outlives forget nowhere.

Layer 0: a store's stamp is read here with :mod:`sqlite3` alone (read-only), so that the layers
below the store (an identifier's ``load``) can check their files without importing it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from facekit.core.files import file_lock

__all__ = ["Origin", "StaleFileError", "store_stamp", "origin_problem", "derived_write", "DERIVED_KINDS"]

#: the kinds of derived files: a saved gallery index, an identifier fitted from the store, an export
DERIVED_KINDS = ("gallery", "identifier", "export")


class StaleFileError(ValueError):
    """A derived file no longer matches the store it came from (gone, replaced or changed since),
    so facekit does not read it. The message names the file, both sides and the fix."""


@dataclass(frozen=True)
class Origin:
    """The store a derived file came from: ``store_id``, ``generation`` and the store's absolute
    ``store_path`` when the file was written."""

    store_id: str
    generation: int
    store_path: str

    def as_json(self) -> dict:
        return {"store_id": self.store_id, "generation": int(self.generation), "store_path": self.store_path}

    @classmethod
    def from_json(cls, d) -> "Origin | None":
        """The origin recorded in a file's metadata (None when it records none); ValueError when
        the entry is malformed."""
        if d is None:
            return None
        ok = (isinstance(d, dict) and isinstance(d.get("store_id"), str) and len(d["store_id"]) <= 64
              and isinstance(d.get("generation"), int) and not isinstance(d.get("generation"), bool)
              and d["generation"] >= 0 and isinstance(d.get("store_path"), str))
        if not ok:
            raise ValueError(f"malformed origin entry {str(d)[:120]}")
        return cls(d["store_id"], int(d["generation"]), d["store_path"])


def store_stamp(path: str | os.PathLike) -> tuple[str, int] | None:
    """``(store id, generation)`` of the face store file at ``path``, read without writing; None
    when no facekit store with an id is there (missing file, another file, or a store of the
    first format, which gets its id when facekit next opens it). OSError when the file exists
    but cannot be read (permissions): the caller must not take that for "gone"."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        con = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise OSError(f"{p}: cannot open the store to check it ({exc})") from None
    try:
        rows = dict(con.execute("SELECT key, value FROM meta WHERE key IN ('store_id', 'generation')").fetchall())
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise OSError(f"{p}: cannot read the store to check it ({exc})") from None
    except sqlite3.DatabaseError:
        return None  # not an SQLite file any more: no store there
    finally:
        con.close()
    sid, gen = rows.get("store_id"), rows.get("generation")
    if not isinstance(sid, str) or not isinstance(gen, int):
        return None
    return sid, gen


def origin_problem(origin: Origin | None, stamp: tuple[str, int] | None, *, same_generation: bool = True) -> str | None:
    """Why a file of ``origin`` may not be read against a store's ``stamp`` (:func:`store_stamp`,
    or a store's ``(store_id, generation)``): None when it matches."""
    if origin is None:
        return "it records no face store (written by an older facekit, or not by facekit)"
    if stamp is None:
        return f"the face store it came from ({origin.store_path}) no longer exists"
    if stamp[0] != origin.store_id:
        return f"the face store at {origin.store_path} was replaced by another one since it was written"
    if same_generation and stamp[1] != origin.generation:
        return (f"the face store changed since it was written (store generation {stamp[1]}, the file's "
                f"{origin.generation})")
    return None


@contextmanager
def derived_write(origin: Origin, path: str | os.PathLike, kind: str, model: str | None = None) -> Iterator[None]:
    """The block that writes derived file ``path`` whose contents were read from the store of
    ``origin`` at ``origin.generation``. Under the file's lock, one write transaction on the
    store registers the file in its ``derived`` table (so ``forget`` reaches it) and checks that
    the store is still that one at that generation; the block runs only then. Otherwise
    :class:`StaleFileError`: the store changed while the contents were computed (a forget or an
    enrolment came in between), and writing them would put back what it removed."""
    if kind not in DERIVED_KINDS:
        raise ValueError(f"kind must be one of {DERIVED_KINDS}, got {kind!r}")
    path = Path(path).expanduser()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with file_lock(str(path) + ".lock"):
        try:
            con = sqlite3.connect(origin.store_path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise StaleFileError(f"{path}: not written: its face store {origin.store_path} cannot be opened ({exc})."
                                 " Fix: check that the store is still there") from None
        try:
            con.execute("BEGIN IMMEDIATE")
            rows = dict(con.execute("SELECT key, value FROM meta WHERE key IN ('store_id', 'generation')").fetchall())
            why = origin_problem(origin, (rows.get("store_id"), rows.get("generation")))
            if why:
                con.execute("ROLLBACK")
                raise StaleFileError(f"{path}: not written: {why}. Fix: compute it again from the store "
                                     "(the command or call that made it)")
            con.execute("INSERT OR REPLACE INTO derived (path, kind, model, generation, written) VALUES (?,?,?,?,?)",
                        (str(path.resolve()), kind, model, int(origin.generation), time.time()))
            con.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StaleFileError(f"{path}: not written: its face store {origin.store_path} cannot be updated "
                                 f"({exc}). Fix: retry when no other program holds the store") from None
        finally:
            con.close()
        yield
