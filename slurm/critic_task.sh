#!/bin/bash
# One task per node of a critic allocation: start this node's vLLM replicas; the first task then
# runs `srft label` against every replica of every node and tells the others to stop.
#
# Run by slurm/critic.sbatch (`srun --ntasks-per-node=1 bash slurm/critic_task.sh ARGS`) and by
# the nemo-run label recipe. ARGS go to `srft label` (--trajectories, -o, ...); --endpoint and
# --model are added here.
# Environment:
#   SRFT_CRITIC_MODEL          HF directory (or name) of the critic model (required)
#   SRFT_CRITIC_NAME           served model name (default: critic)
#   SRFT_VLLM_PYTHON           python of the vLLM install (default: $SRFT_REPO/.venv-vllm/bin/python)
#   SRFT_VLLM_REPLICAS_PER_NODE  replicas per node (default 1); GPUs are split evenly between them
#   SRFT_VLLM_PORT             first port (default 8000); replica r of node n uses PORT + n*R + r
#   SRFT_VLLM_ARGS             extra vLLM server arguments (e.g. "--max-model-len 32768")
#   SRFT_VLLM_READY_TIMEOUT    seconds `srft label` waits for the servers (default 1800)
#   SRFT_CRITIC_API_KEY        the replicas' API key, the same for every task of the job (critic.sbatch
#                              makes one per job). Unset on one node: made here. Unset on several nodes
#                              (the nemo-run label stage): made by the first task to get there, and
#                              shared through a private file (mode 600) in RUN/labels, removed at the end.
#   SRFT_VLLM_HOST             address the replicas listen on (default: this node's SLURM NodeAddr,
#                              127.0.0.1 outside SLURM); never 0.0.0.0 unless you ask for it
set -euo pipefail
: "${SRFT_CRITIC_MODEL:?set SRFT_CRITIC_MODEL to the critic model directory}"
SRFT_REPO=${SRFT_REPO:-${SLURM_SUBMIT_DIR:-$PWD}}
SRFT_RUN_DIR=${SRFT_RUN_DIR:?set SRFT_RUN_DIR}
python=${SRFT_PYTHON:-$SRFT_REPO/.venv/bin/python}
vllm_python=${SRFT_VLLM_PYTHON:-$SRFT_REPO/.venv-vllm/bin/python}
name=${SRFT_CRITIC_NAME:-critic}
replicas=${SRFT_VLLM_REPLICAS_PER_NODE:-1}
base_port=${SRFT_VLLM_PORT:-8000}
node=${SLURM_NODEID:-0}
job=${SLURM_JOB_ID:-local}
done_flag=$SRFT_RUN_DIR/labels/.critic-done-$job
mkdir -p "$SRFT_RUN_DIR/logs" "$SRFT_RUN_DIR/labels"

node_addr() {  # SLURM's NodeAddr of a node: what slurmd itself is reached on
  { scontrol show node -o "$1" 2>/dev/null || true; } | tr ' ' '\n' | sed -n 's/^NodeAddr=//p'
}

# The job's key, without a trace on any command line (only bash builtins and env carry it).
key_file=
if [ -z "${SRFT_CRITIC_API_KEY:-}" ]; then
  if [ "${SLURM_NNODES:-1}" -le 1 ]; then
    SRFT_CRITIC_API_KEY=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
  else
    key_file=$SRFT_RUN_DIR/labels/.critic-key-$job
    if [ ! -s "$key_file" ]; then
      tmp_key=$(umask 077 && mktemp "$key_file.XXXXXX")
      od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$tmp_key"
      ln "$tmp_key" "$key_file" 2>/dev/null || true   # atomic: the first task's key wins
      rm -f "$tmp_key"
    fi
    SRFT_CRITIC_API_KEY=$(< "$key_file")
  fi
fi
export VLLM_API_KEY=$SRFT_CRITIC_API_KEY   # vLLM's --api-key, read from the environment
if [ -z "${SRFT_VLLM_HOST:-}" ]; then
  if [ -n "${SLURMD_NODENAME:-}" ]; then SRFT_VLLM_HOST=$(node_addr "$SLURMD_NODENAME"); fi
  SRFT_VLLM_HOST=${SRFT_VLLM_HOST:-127.0.0.1}
fi

# GPUs on this node, split between the replicas (tensor parallel inside each replica).
IFS=, read -r -a gpus <<< "${CUDA_VISIBLE_DEVICES:-}"
per=$(( ${#gpus[@]} / replicas ))

pgids=()
stop_servers() {
  for pg in "${pgids[@]}"; do kill -TERM -- "-$pg" 2>/dev/null || true; done
  sleep 2
  for pg in "${pgids[@]}"; do kill -KILL -- "-$pg" 2>/dev/null || true; done
}
cleanup() {
  stop_servers
  if [ -n "$key_file" ] && [ "${SLURM_PROCID:-0}" = 0 ]; then rm -f "$key_file"; fi
}
trap cleanup EXIT

for ((r = 0; r < replicas; r++)); do
  port=$(( base_port + node * replicas + r ))
  env_args=()
  if [ "$per" -gt 0 ]; then
    env_args+=("CUDA_VISIBLE_DEVICES=$(IFS=,; echo "${gpus[*]:$((r * per)):$per}")")
    tp=(--tensor-parallel-size "$per")
  else
    tp=()
    # CPU builds of vLLM: give each replica its own core
    [ "${VLLM_TARGET_DEVICE:-}" = cpu ] && env_args+=("VLLM_CPU_OMP_THREADS_BIND=$(( (node * replicas + r) % $(nproc) ))")
  fi
  read -r -a extra <<< "${SRFT_VLLM_ARGS:-}"
  log=$SRFT_RUN_DIR/logs/vllm-$job-node$node-r$r.log
  setsid env "${env_args[@]}" "$vllm_python" -m vllm.entrypoints.openai.api_server \
    --model "$SRFT_CRITIC_MODEL" --served-model-name "$name" --host "$SRFT_VLLM_HOST" --port "$port" "${tp[@]}" \
    --structured-outputs-config '{"backend":"xgrammar","disable_any_whitespace":true}' "${extra[@]}" \
    > "$log" 2>&1 &
  pgids+=($!)
  echo "srft critic: node $node replica $r on $SRFT_VLLM_HOST:$port (log $log)" >&2
done

if [ "${SLURM_PROCID:-0}" != 0 ]; then
  # Serve until the labeller on the first node is done (or the job ends).
  while [ ! -e "$done_flag" ]; do sleep 5; done
  exit 0
fi

endpoints=()
n=0
if [ -n "${SLURM_JOB_NODELIST:-}" ]; then hosts=$(scontrol show hostnames "$SLURM_JOB_NODELIST"); else hosts=local; fi
for host in $hosts; do
  addr=$(node_addr "$host")
  [ "${SLURM_NNODES:-1}" -le 1 ] && addr=$SRFT_VLLM_HOST   # one node: where this task's replicas listen
  for ((r = 0; r < replicas; r++)); do
    endpoints+=(--endpoint "http://${addr:-$host}:$(( base_port + n * replicas + r ))")
  done
  n=$((n + 1))
done
echo "srft critic: labelling with $(( ${#endpoints[@]} / 2 )) replicas: ${endpoints[*]}" >&2
rc=0
OPENAI_API_KEY=$SRFT_CRITIC_API_KEY "$python" -m srft_megatron.cli label "${endpoints[@]}" --model "$name" \
  --wait-for-endpoints "${SRFT_VLLM_READY_TIMEOUT:-1800}" "$@" || rc=$?
echo "$rc" > "$done_flag"
exit "$rc"
