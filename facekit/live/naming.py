"""Naming a tracked face (notebook 06): the mean of its last embeddings against the gallery.

A track's name comes from the mean of its last few embeddings (so one blurry frame does not flip
it), compared with the gallery's nearest photo; above the "unknown" threshold it is ``unknown``.
The threshold can move live (the camera widget's slider): the identifier is asked for its
closed-set answer and the threshold is applied here, so nothing is refitted or re-embedded.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from facekit.core.constants import UNKNOWN
from facekit.live.results import PENDING

__all__ = ["TrackName", "gallery_threshold", "nearest_name"]


@dataclass
class TrackName:
    """What the recogniser knows of one track's identity.

    embeddings: the last ``memory`` embeddings (float32 (d,) each); name: gallery name, ``unknown``
    or ``...`` (nothing embedded yet); distance: squared L2 to the nearest gallery photo;
    last_embed: frame index of the last embedding.
    """

    embeddings: deque
    name: str = PENDING
    distance: float = float("nan")
    last_embed: int = -10**9
    _key: tuple = field(default=(), repr=False)  # what the name was last computed from

    @classmethod
    def empty(cls, memory: int) -> "TrackName":
        return cls(deque(maxlen=int(memory)))

    def add(self, embedding: np.ndarray, index: int) -> None:
        """Remember an embedding made on frame ``index``."""
        self.embeddings.append(embedding)
        self.last_embed = index

    def update(self, identifier, threshold: float | None, version: int) -> None:
        """Recompute ``name`` and ``distance`` when an embedding, the gallery or the threshold
        (``version`` counts their changes) moved since the last time; else a no-op."""
        if not self.embeddings:
            self.name, self.distance = PENDING, float("nan")
            return
        key = (version, self.last_embed, len(self.embeddings))
        if key == self._key:
            return
        self._key = key
        if identifier is None or not len(identifier.names):
            self.name, self.distance = UNKNOWN, float("nan")
            return
        mean = np.mean(np.stack(self.embeddings), axis=0)
        mean = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
        self.name, self.distance = nearest_name(identifier, mean[None], threshold)


def gallery_threshold(identifier) -> float | None:
    """The identifier's own "unknown" threshold (``threshold_``, else ``threshold``), or None."""
    if identifier is None:
        return None
    v = getattr(identifier, "threshold_", None)
    if v is None:
        v = getattr(identifier, "threshold", None)
    return None if v is None else float(v)


def nearest_name(identifier, embeddings: np.ndarray, threshold: float | None) -> tuple[str, float]:
    """Name and score of one embedding ``(1, d)``; ``threshold`` (None: the identifier's) decides
    "unknown". The identifier's closed-set name is asked for (``reject=False``), so the threshold
    can be moved live without refitting anything."""
    labels, scores = identifier.predict_scores(embeddings, reject=False)
    name, score = str(labels[0]), float(scores[0])
    th = gallery_threshold(identifier) if threshold is None else threshold
    if th is not None and not score <= th:
        name = UNKNOWN
    return name, score
