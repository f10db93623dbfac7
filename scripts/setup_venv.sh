#!/usr/bin/env bash
# Create or refresh the project's virtual environment from requirements.lock (every version pinned).
# Idempotent: pip skips what is already installed, so a second run takes seconds.
set -euo pipefail
venv=${1:-.venv}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ ! -x "$venv/bin/python" ]; then
  py=$(bash scripts/find_python312.sh)
  echo "creating $venv with $py"
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.lock
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
echo "venv ready: $venv ($("$venv/bin/python" -c 'import torch, megatron.core as m; print("torch", torch.__version__, "megatron-core", m.__version__)' 2>/dev/null | tail -1))"
