"""Switching a store's model: re-embed what it holds from the photos it came from (issue 23).

A store keeps each face's embedding per model (fingerprint); two models' embeddings are never
compared. Using another model (``--model dlib128``, ``FaceStore.identifier("dlib128")``) needs
the store's faces embedded by that model. :func:`switch_model` makes them, with a progress bar:

- **enrolled faces** that came from a photo (``facekit enrol``, folder enrolment): the photo is
  read again, checked against the sha256 recorded at enrolment, its faces detected, the one whose
  box overlaps the recorded box most (IoU >= 0.5) is cut as the new model cuts faces and embedded;
- **cached photos** of ``facekit index``: their recorded boxes and landmarks are cut and embedded
  again (no new detection), keeping who each face was attributed to;
- everything that cannot be re-embedded is **reported, never guessed**: faces from the webcam or
  the API (no photo is kept), photos moved, changed or unreadable, faces no longer found. The fix
  is to enrol those again with the new model.

Taught in appendix A4 ("two models, one decision"); the CLI runs it when a command's ``--model``
finds people of the store without faces of that model (:func:`facekit.cli.common.store_for_model`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from facekit.core.cache import sha256sum
from facekit.core.images import ImageLoadError, load_image_scaled
from facekit.detection.align import align_for
from facekit.detection.detector import Face, get_detector
from facekit.embedding.embedder import Embedder, get_embedder
from facekit.models.registry import MODELS
from facekit.store.records import FaceRecord, PhotoSource, model_fingerprint

__all__ = ["SwitchReport", "switch_model", "people_without", "MIN_IOU"]

#: a re-detected face is the enrolled one when its box overlaps the recorded box this much
MIN_IOU = 0.5


@dataclass
class SwitchReport:
    """What :func:`switch_model` did: ``faces`` enrolled faces and ``photos`` cached photos
    re-embedded with ``model`` (a fingerprint); ``missing``: ``(person or photo, path or source,
    why)`` for each face or photo that could not be re-embedded."""

    model: str
    faces: int = 0
    photos: int = 0
    missing: list[tuple[str, str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line, then one per missing item (what the CLI prints)."""
        lines = [f"re-embedded {self.faces} enrolled face(s) and {self.photos} cached photo(s) with {self.model}"]
        if self.missing:
            lines.append(f"{len(self.missing)} could not be re-embedded (enrol them again with this model):")
            lines += [f"  {who}: {where}: {why}" for who, where, why in self.missing]
        return "\n".join(lines)


def _embedder(model) -> Embedder:
    if isinstance(model, Embedder):
        return model
    if isinstance(model, str) and model in MODELS:
        return get_embedder(model)
    raise ValueError(f"switch_model needs a registry name (one of {sorted(MODELS)}) or an Embedder, not {model!r}")


def people_without(store, model) -> list[str]:
    """People with faces of some other model but none of ``model`` (cheap: no photo is read)."""
    fp = model_fingerprint(model)
    have, other = set(), set()
    for person, m, *_ in store.face_sources():
        (have if m == fp else other).add(person)
    return sorted(other - have)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _read(path: str, sha: str | None) -> tuple[np.ndarray | None, float, str | None]:
    """``(image, scale, None)`` or ``(None, 1, why)``: the photo as recorded, or why not."""
    if not os.path.isfile(path):
        return None, 1.0, "photo not found (moved or deleted since)"
    try:
        if sha is not None and sha256sum(path) != sha:
            return None, 1.0, "photo changed since it was recorded (its sha256 differs)"
        img, scale = load_image_scaled(path)
    except (OSError, ImageLoadError) as exc:
        return None, 1.0, f"photo unreadable ({exc})"
    return img, scale, None


def _enrolled(store, emb: Embedder, fp: str, bar, report: SwitchReport) -> None:
    rows = store.face_sources()
    done = {(p, sha) for p, m, _, _, sha, _ in rows if m == fp and sha}
    seen: set = set()
    det = get_detector()
    for person, m, source, path, sha, box in rows:
        if m == fp or (person, sha or path or source) in seen:
            continue
        seen.add((person, sha or path or source))
        bar.update(1)
        if source != "photo" or not path:
            report.missing.append((person, source, "no photo is kept for faces added this way"))
            continue
        if (person, sha) in done:
            continue
        img, scale, why = _read(path, sha)
        if img is None:
            report.missing.append((person, path, why))
            continue
        faces = det.detect(img)
        full = [f.scaled(scale) for f in faces]
        if box is None:
            pick = max(range(len(full)), key=lambda i: full[i].area, default=None)
        else:
            best = max(range(len(full)), key=lambda i: _iou(full[i].box, box), default=None)
            pick = best if best is not None and _iou(full[best].box, box) >= MIN_IOU else None
        if pick is None:
            report.missing.append((person, path, "the enrolled face is no longer found in the photo"))
            continue
        e = emb.embed(align_for(emb.spec.crop, img, [faces[pick]]))
        store.add_faces(person, e, model=emb, sources=[PhotoSource(path, sha, tuple(float(v) for v in full[pick].box))])
        done.add((person, sha))
        report.faces += 1


def _cached(store, emb: Embedder, fp: str, bar, report: SwitchReport) -> None:
    have = store.photo_index(fp)
    for m in store.photo_models():
        if m == fp:
            continue
        for path, (size, mtime_ns, sha) in store.photo_index(m).items():
            if path in have:
                continue  # (also a photo that an earlier model of this loop gave already)
            bar.update(1)
            recs = store.cached_photo(path, size, mtime_ns, m)
            if recs is None:
                report.missing.append(("cached photo", path, "its cache entry is damaged; `facekit index` it again"))
                continue
            if recs:
                img, scale, why = _read(path, sha)
                if img is None:
                    report.missing.append(("cached photo", path, why))
                    continue
                faces = [Face(r.box, r.landmarks, r.confidence).scaled(1.0 / scale) for r in recs]
                e = emb.embed(align_for(emb.spec.crop, img, faces))
                recs = [FaceRecord(r.box, r.landmarks, r.confidence, v, r.person) for r, v in zip(recs, e)]
            if store.put_photo(path, size, mtime_ns, sha, emb, recs):
                have[path] = (size, mtime_ns, sha)
                report.photos += 1


def switch_model(store, model, *, enrolled: bool = True, photos: bool = True, progress: bool = True) -> SwitchReport:
    """Embed with ``model`` (a registry name or :class:`Embedder`) every enrolled face
    (``enrolled``) and cached photo (``photos``) of ``store`` that other models have and it lacks,
    from the photos they came from; one transaction per face or photo, so an interruption keeps
    what was done and a rerun goes on. Nothing is removed: each model's embeddings stay. Returns a
    :class:`SwitchReport` listing what could not be re-embedded and why."""
    from tqdm.auto import tqdm

    emb = _embedder(model)
    fp = model_fingerprint(emb)
    report = SwitchReport(fp)
    todo = len({(p, sha or path or src) for p, m, src, path, sha, _ in store.face_sources() if m != fp}) if enrolled else 0
    if photos:
        todo += len({path for m in store.photo_models() if m != fp for path in store.photo_index(m)})
    with tqdm(total=todo, desc=f"re-embedding with {emb.spec.name}", unit="face", disable=not progress or not todo) as bar:
        if enrolled:
            _enrolled(store, emb, fp, bar, report)
        if photos:
            _cached(store, emb, fp, bar, report)
    return report
