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
    precision: the networks' arithmetic, "fp32" or "int8" (both in ONNX Runtime); backend: where
    fp32 networks run, "onnxruntime" or "tensorflow" (default: ``$FACEKIT_DETECTOR`` of the process
    that makes the settings, else "onnxruntime"; int8: always "onnxruntime"): fixed here, so Ray
    workers detect as the driver does."""

    min_face_size: float = 20.0
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    scale_factor: float = 0.709
    max_side: int | None = 1280
    precision: str = "fp32"
    backend: str | None = None

    def __post_init__(self):
        from facekit.detection.detector import BACKENDS, default_backend

        if self.precision not in PRECISIONS:
            raise ValueError(f"detector precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.precision == "int8" and self.backend not in (None, "onnxruntime"):
            raise ValueError("int8 detection runs in ONNX Runtime only (backend='onnxruntime')")
        object.__setattr__(self, "backend", self.backend or (
            "onnxruntime" if self.precision == "int8" else default_backend()))
        if self.backend not in BACKENDS:
            raise ValueError(f"detector backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.max_side is not None and int(self.max_side) < 48:
            raise ValueError(f"max_side must be at least 48 px (O-Net's input) or None, got {self.max_side!r}")
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))

    def build(self, threads: int | None = None):
        """A :class:`facekit.detection.detector.Detector` with these settings (int8 networks loaded and
        checked once per call; share the detector). ``threads``: ONNX Runtime intra-op threads per
        network (a Ray actor passes its CPUs; default one per core)."""
        from facekit.detection.detector import Detector

        networks = None
        if self.precision == "int8":
            from facekit.detection.int8 import onnx_networks

            networks = onnx_networks("int8", threads=threads)
        return Detector(min_face_size=self.min_face_size, thresholds=self.thresholds, scale_factor=self.scale_factor,
                        max_side=self.max_side, networks=networks, backend=self.backend, threads=threads)

    def to_dict(self) -> dict:
        return asdict(self)
