#!/usr/bin/env bash
# Create or refresh .venv-launch: nemo-run in its own virtual environment.
#
# Why a separate venv: nemo-run 0.11.1 would downgrade pinned packages of the main venv
# (httpx 0.28.1 -> 0.27.2, anyio, urllib3) and pulls ray, which it never imports. The project
# talks to it only by subprocess (`srft launch` runs
# `.venv-launch/bin/python -m srft_megatron.launch.driver ...`). leptonai is pinned below 0.47 because 0.47
# removed a module nemo-run imports.
#
#   bash scripts/nemorun_venv.sh            # -> .venv-launch (idempotent; ~1 s when already there)
#   bash scripts/nemorun_venv.sh /path/venv
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$root/.venv-launch}
lock=$root/launch/requirements-nemorun.lock
stamp=$venv/.lock-sha256
want=$(sha256sum "$lock" | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0   # the stamp is written only after `import nemo_run` worked with exactly this lock
fi
if [ ! -x "$venv/bin/python" ]; then
  py=$(bash "$root/scripts/find_python312.sh")
  echo "creating $venv with $py" >&2
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$lock" >&2
"$venv/bin/python" -c 'import nemo_run; print("nemo-run", nemo_run.__version__ if hasattr(nemo_run, "__version__") else "?")' >&2
echo "$want" > "$stamp"
