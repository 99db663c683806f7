"""Box overlap for live recognition (notebook 06): the names of :mod:`facekit.core.boxes`, where they live."""

from __future__ import annotations

from facekit.core.boxes import greedy_match, iou, iou_matrix

__all__ = ["iou", "iou_matrix", "greedy_match"]
