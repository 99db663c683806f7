"""One detector-settings object: everything that decides which faces a detector finds.

Taught in notebook 07 (indexing an archive). ``facekit index`` builds one :class:`DetectorSettings`
and hands it to both engines (local and Ray), so they detect alike; a Ray worker rebuilds its
detector from the same (picklable) settings. Adding a setting means one field here and one option
of the command.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["DetectorSettings", "PRECISIONS"]

#: MTCNN networks: "fp32" (default) or "int8" (ONNX Runtime, :mod:`facekit.detection.int8`)
PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class DetectorSettings:
    """min_face_size: smallest face in pixels of the photo (default 20, MTCNN's reference code);
    thresholds: P-, R-, O-Net score cuts (0.6, 0.7, 0.7); scale_factor: pyramid step (0.709);
    max_side: photos with a longer side are detected on a downscaled copy (1280 px; None: never);
    precision: the networks' arithmetic, "fp32" or "int8"."""

    min_face_size: float = 20.0
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    scale_factor: float = 0.709
    max_side: int | None = 1280
    precision: str = "fp32"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"detector precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.max_side is not None and int(self.max_side) < 48:
            raise ValueError(f"max_side must be at least 48 px (O-Net's input) or None, got {self.max_side!r}")
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))

    def build(self):
        """A :class:`facekit.detection.detector.Detector` with these settings (int8 networks loaded and
        checked once per call; share the detector)."""
        from facekit.detection.detector import Detector

        networks = None
        if self.precision == "int8":
            from facekit.detection.int8 import onnx_networks

            networks = onnx_networks("int8")
        return Detector(min_face_size=self.min_face_size, thresholds=self.thresholds, scale_factor=self.scale_factor,
                        max_side=self.max_side, networks=networks)

    def to_dict(self) -> dict:
        return asdict(self)
