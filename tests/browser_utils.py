"""Helpers for the real-browser tests (tests/test_browser.py): a headless Chromium with a fake
webcam, a JupyterLab server started for the test, and a static file server.

Chromium is Debian's package (``./run.sh test`` installs it when missing; ``$CHROMIUM`` overrides
the path). Playwright's own browser download is not used.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import secrets
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "browser"

# Without the background-networking flags Chromium floods a closed network with connections.
BASE_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             # a name that resolves to this machine but is not "localhost": NOT a secure context
             "--host-resolver-rules=MAP insecure.test 127.0.0.1"]
FAKE_UI = "--use-fake-ui-for-media-stream"        # grant the camera permission without a prompt
FAKE_DEVICE = "--use-fake-device-for-media-stream"  # a fake webcam (a test pattern, or a .y4m file)


def find_chromium() -> str | None:
    """Path of a Chromium executable, or None."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def camera_args(y4m: str | os.PathLike | None = None, *, grant: bool = True, device: bool = True) -> list[str]:
    """Chromium flags: a fake camera (playing ``y4m`` when given), permission granted or not."""
    args = list(BASE_ARGS)
    if grant:
        args.append(FAKE_UI)
    if device:
        args.append(FAKE_DEVICE)
        if y4m is not None:
            args.append(f"--use-file-for-fake-video-capture={y4m}")
    return args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_directory(directory: str | os.PathLike):
    """A quiet static HTTP server on 127.0.0.1 for ``directory``; yields its port."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


@contextlib.contextmanager
def jupyter_lab(root_dir: str | os.PathLike, log_path: str | os.PathLike, timeout: float = 90):
    """Start JupyterLab (the repo's venv) on a free port serving ``root_dir``, with its settings,
    runtime and workspace folders inside ``root_dir``'s parent; yields ``(base_url, token)``.
    The app is exposed as ``window.jupyterapp`` so a test can run its commands. Kernels get
    ``FACEKIT_STORE`` = a fresh file in that folder: a test never touches the user's face store."""
    root_dir = Path(root_dir)
    home = root_dir.parent / "jupyter-home"
    for sub in ("config", "data", "runtime", "settings", "workspaces", "ipython"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    # no "get notified about Jupyter news?" toast over the screenshots
    news = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True, exist_ok=True)
    news.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ,
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), IPYTHONDIR=str(home / "ipython"),
               FACEKIT_STORE=str(home / "faces.sqlite3"),
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
           "--LabApp.expose_app_in_browser=True", "--ServerApp.port_retries=0"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers, CI runners
        cmd.append("--allow-root")
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(root_dir))
    base = f"http://localhost:{port}"
    try:
        end = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {proc.returncode}; log: {Path(log_path).read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > end:
                raise TimeoutError(f"JupyterLab did not start in {timeout:.0f} s; log: {log_path}")
            time.sleep(0.5)
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
