"""Widgets of facekit.teach.plots respond to their controls (drawn into Image widgets, no Output widget)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")


def test_triplet_margin_explorer_redraws_on_slider_change():
    import ipywidgets as W

    from facekit.teach.widgets import triplet_margin_explorer

    box = triplet_margin_explorer(positive_deg=40, margin=0.2)
    (pos, mar), view = box.children[0].children, box.children[1]
    assert isinstance(view, W.Image) and not any(isinstance(w, W.Output) for w in box.children)
    first = bytes(view.value)
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    pos.value = 120  # positive far from the anchor: a different picture
    second = bytes(view.value)
    assert second[:8] == b"\x89PNG\r\n\x1a\n" and second != first
    mar.value = 1.0
    assert bytes(view.value) != second
