#!/usr/bin/env bash
# Print the path of a working Python 3.12 interpreter (megatron-core >= 0.17 requires 3.12).
# A pyenv shim named python3.12 may exist without 3.12 being selected, so each candidate is run.
set -euo pipefail
for cand in "${PYTHON312:-}" python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do
  [ -n "$cand" ] || continue
  if out=$("$cand" -c 'import sys; assert sys.version_info[:2] == (3, 12); print(sys.executable)' 2>/dev/null); then
    echo "$out"; exit 0
  fi
done
echo "error: no Python 3.12 found (megatron-core >= 0.17 needs it); install it (e.g. 'pyenv install 3.12') or set PYTHON312=/path/to/python3.12" >&2
exit 1
