"""The face store's photos: the photo-folder cache (each scanned photo's faces, so a re-scan only
reads what changed) and where each enrolled face came from (what a model switch re-embeds from).

A mixin of :class:`facekit.store.db.FaceStore` (notebook 07, ``facekit index``): tables ``photos``
(path, size, mtime, content sha256, model fingerprint) and ``photo_faces`` (each detected face's
box, landmarks, confidence and embedding, and the person it was attributed to, if any). No file
derived from the store holds the cache, so changing it leaves the store's generation as it is
(:mod:`facekit.store.schema`): an index run does not make the saved gallery index stale.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Sequence

import numpy as np

from facekit.core.names import check_name
from facekit.store.records import FaceRecord, model_fingerprint, unit_rows
from facekit.store.tombstones import buried

__all__ = ["PhotoCache"]


class PhotoCache:
    """The photo cache methods of :class:`facekit.store.db.FaceStore` (which supplies ``_read``,
    ``_tx``, ``_person_id``, ``_bump`` and ``path``)."""

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
                  records: Sequence[FaceRecord]) -> bool:
        """Cache the faces of photo ``path`` (replacing an older entry for it), one transaction.
        A record's ``person`` must be enrolled already (:class:`UnknownPersonError`). Returns False,
        caching nothing, for a photo of a forgotten person (:mod:`facekit.store.tombstones`)."""
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
            if buried(cur, str(path), str(sha256)):
                return False
            cur.execute("DELETE FROM photos WHERE path = ? AND model = ?", (str(path), fp))
            cur.execute("INSERT INTO photos (path, model, size, mtime_ns, sha256, scanned) VALUES (?,?,?,?,?,?)",
                        (str(path), fp, int(size), int(mtime_ns), str(sha256), time.time()))
            pid = cur.lastrowid
            for i, box, lm, conf, emb, person in rows:
                who = None if person is None else self._person_id(cur, person, False)
                cur.execute("INSERT INTO photo_faces VALUES (?,?,?,?,?,?,?)", (pid, i, box, lm, conf, emb, who))
        return True

    def photo_models(self) -> dict[str, int]:
        """``{model fingerprint: number of cached photos}`` (a model switch re-embeds from these)."""
        return {m: int(n) for m, n in self._read("SELECT model, count(*) FROM photos GROUP BY model")}

    def face_sources(self) -> list[tuple[str, str, str, str | None, str | None, tuple | None]]:
        """Where every enrolled face came from, for a model switch (:mod:`facekit.store.switch`):
        ``(person, model fingerprint, source, photo path, photo sha256, box px or None)`` per face;
        ``source`` is ``"photo"`` or the word it was added with (``"camera"``, ``"api"``: no photo kept)."""
        rows = self._read("SELECT p.name, f.model, f.source, f.photo_path, f.photo_sha256, f.box FROM faces f "
                          "JOIN people p ON p.id = f.person_id ORDER BY f.id")
        out = []
        for name, model, source, path, sha, box in rows:
            try:
                b = None if box is None else tuple(float(v) for v in box.strip("[]").split(","))
            except ValueError:
                b = None  # a damaged box: the largest face is taken instead
            out.append((name, model, source, path, sha, b if b is None or len(b) == 4 else None))
        return out

    def switch_model(self, model, **kw):
        """Embed with ``model`` what other models hold, from the photos (:func:`facekit.store.switch.switch_model`)."""
        from facekit.store.switch import switch_model

        return switch_model(self, model, **kw)

    def forget_photo(self, path: str | os.PathLike, model=None) -> int:
        """Drop the cache entry of ``path`` (all models if ``model`` is None). Returns rows removed."""
        with self._tx() as cur:
            if model is None:
                cur.execute("DELETE FROM photos WHERE path = ?", (str(path),))
            else:
                cur.execute("DELETE FROM photos WHERE path = ? AND model = ?", (str(path), model_fingerprint(model)))
            return int(cur.rowcount)
