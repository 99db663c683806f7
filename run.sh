#!/usr/bin/env bash
# facekit's one entry point. On a fresh machine with Python 3.11/3.12:
#   ./run.sh lab     set everything up, then open the notebook series in JupyterLab
#   ./run.sh test    set everything up, then run the whole test suite (what CI runs)
#   ./run.sh book    set everything up, execute the series (small mode; --full for the published
#                    figures) and build a static HTML book into _build/html (front page index.html)
# Also: ./run.sh setup | ./run.sh bench NAME (bench/NAME.py) | ./run.sh py ARGS (the venv's python)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$PWD
VENV=$ROOT/.venv
PY=$VENV/bin/python

log() { printf '\033[1m[facekit]\033[0m %s\n' "$*" >&2; }

find_python() {
  for c in ${PYTHON:-} python3.11 python3.12 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(not ((3,11) <= sys.version_info[:2] <= (3,12)))' 2>/dev/null; then
      echo "$c"; return 0
    fi
  done
  log "need Python 3.11 or 3.12 (TensorFlow 2.21). Install one, or set PYTHON=/path/to/python3.11"; exit 1
}

setup() {
  if [ ! -x "$PY" ]; then
    local base; base=$(find_python)
    log "creating virtual environment .venv with $($base --version)"
    "$base" -m venv "$VENV" || { log "venv failed: on Debian/Ubuntu run 'apt-get install python3-venv'"; exit 1; }
  fi
  local want have stamp=$VENV/.facekit-installed
  want=$(cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
  have=$(cat "$stamp" 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    log "installing requirements into .venv (first time: a few minutes)"
    "$PY" -m pip install -q --disable-pip-version-check -U pip
    "$PY" -m pip install -q --disable-pip-version-check -r requirements.txt
    "$PY" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
    echo "$want" > "$stamp"
  fi
  # Model weights + sample photos into $FACEKIT_HOME (default ~/.cache/facekit), sha256-checked.
  "$PY" -m facekit fetch
  # LFW: use $SCIKIT_LEARN_DATA if set; else a shared read-only copy beside the repo (mirrored
  # as symlinks, since scikit-learn writes a cache next to it); else scikit-learn downloads on use.
  if [ -z "${SCIKIT_LEARN_DATA:-}" ] && [ -d "$ROOT/../shared/sklearn_data/lfw_home" ]; then
    "$PY" -c "from facekit.data.lfw import make_writable_data_home as m; m('$ROOT/../shared/sklearn_data', '$ROOT/.cache/sklearn_data')"
    export SCIKIT_LEARN_DATA=$ROOT/.cache/sklearn_data
  fi
  if [ -n "${SCIKIT_LEARN_DATA:-}" ]; then log "LFW data home: $SCIKIT_LEARN_DATA"; fi
}

ensure_browser() {
  # The browser tests drive a real headless Chromium (Debian's package: Playwright's own
  # browser download is not needed). Installed when missing and we may use apt-get.
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then return 0; fi
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=$(command -v sudo || true)
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; }; then
    log "installing Debian chromium for the browser tests"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
  else
    log "chromium not found and cannot apt-get it: browser tests will skip (set CHROMIUM=/path/to/chromium)"
  fi
}

cmd=${1:-lab}; shift || true
case "$cmd" in
  setup) setup ;;
  lab)
    setup
    log "opening the series: notebooks/ (Ctrl-C to stop)"
    # Jupyter refuses to start as root (containers, cloud VMs) unless told it is intended
    root_flag=(); [ "$(id -u)" = 0 ] && root_flag=(--allow-root)
    exec "$VENV/bin/jupyter" lab --notebook-dir="$ROOT/notebooks" "${root_flag[@]}" "$@" ;;
  test)
    setup
    ensure_browser
    export TF_CPP_MIN_LOG_LEVEL=2
    exec "$PY" -m pytest "$@" ;;
  bench)
    setup
    name=${1:?usage: ./run.sh bench NAME}; shift
    exec "$PY" "bench/$name.py" "$@" ;;
  book)
    setup
    export TF_CPP_MIN_LOG_LEVEL=2
    exec "$PY" book/build.py "$@" ;;
  py) setup; exec "$PY" "$@" ;;
  *) echo "usage: ./run.sh lab|test|book [--full]|setup|bench NAME|py ARGS" >&2; exit 2 ;;
esac
