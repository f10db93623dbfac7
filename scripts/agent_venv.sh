#!/usr/bin/env bash
# Create or refresh .venv-agent: the agent scaffold (mini-swe-agent) and the SWE-bench harness (swebench).
#
# Why a separate venv: mini-swe-agent pulls litellm/openai and swebench pulls datasets, modal,
# docker, pandas and pre-commit (about 60 packages the trainer never imports). They resolve
# together without conflict (scripts/agent_venv.lock, every version pinned); the project talks
# to them by subprocess only (`srft evaluate` runs `.venv-agent/bin/mini-extra swebench ...` and
# `.venv-agent/bin/python -m swebench.harness.run_evaluation ...`).
#
#   bash scripts/agent_venv.sh            # -> .venv-agent (idempotent; ~1 s when already there)
#   bash scripts/agent_venv.sh /path/venv
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$root/.venv-agent}
lock=$root/scripts/agent_venv.lock
stamp=$venv/.lock-sha256
want=$(sha256sum "$lock" | cut -d' ' -f1)
check='import minisweagent, swebench.harness.run_evaluation, swebench.harness.reporting'
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] \
   && "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  py=$(bash "$root/scripts/find_python312.sh")
  echo "creating $venv with $py" >&2
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$lock" >&2
"$venv/bin/python" -c "$check" >/dev/null
echo "$want" > "$stamp"
echo "agent venv ready: $venv" >&2
