# Sourced by every slurm/*.sbatch script: where the code, the venv and the run directory are,
# the optional pyxis container, network variables, and pre-emption signal handling.
#
# Why one shared file: SLURM copies a submitted script into its spool directory, so a script
# cannot find the repository from its own path. Every stage needs the same answers (repo, python,
# run-dir layout, how to wrap srun in a container, how to pass SIGTERM on to the trainer), and
# they must agree with the nemo-run recipes (srft_megatron/launch/).
#
# Environment read here (all optional except SRFT_RUN_DIR):
#   SRFT_REPO          repository checkout (default: $SLURM_SUBMIT_DIR, i.e. where you ran sbatch)
#   SRFT_RUN_DIR       the run directory (layout: srft_megatron/launch/rundir.py, README)
#   SRFT_PYTHON        python with srft installed (default: $SRFT_REPO/.venv/bin/python; `python`
#                      inside a container)
#   SRFT_CONTAINER_IMAGE   run every srun step in this image through pyxis (--container-image)
#   SRFT_CONTAINER_MOUNTS  extra pyxis mounts, comma-separated (repo and run dir are always mounted)
#   SRFT_NET_IFNAME    network interface for NCCL/gloo (sets NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME)

set -euo pipefail

SRFT_REPO=${SRFT_REPO:-${SLURM_SUBMIT_DIR:-$PWD}}
: "${SRFT_RUN_DIR:?set SRFT_RUN_DIR to the run directory (see README: run directory layout)}"
SRFT_RUN_DIR=$(mkdir -p "$SRFT_RUN_DIR" && cd "$SRFT_RUN_DIR" && pwd)
mkdir -p "$SRFT_RUN_DIR"/{logs,configs,data,labels,datasets,train,hf,eval}
export SRFT_REPO SRFT_RUN_DIR

if [ -n "${SRFT_CONTAINER_IMAGE:-}" ]; then
  SRFT_PYTHON=${SRFT_PYTHON:-python}
  mounts="$SRFT_REPO:$SRFT_REPO,$SRFT_RUN_DIR:$SRFT_RUN_DIR${SRFT_CONTAINER_MOUNTS:+,$SRFT_CONTAINER_MOUNTS}"
  SRUN_CONTAINER=(--container-image="$SRFT_CONTAINER_IMAGE" --container-mounts="$mounts"
                  --container-workdir="$SRFT_REPO")
else
  SRFT_PYTHON=${SRFT_PYTHON:-$SRFT_REPO/.venv/bin/python}
  SRUN_CONTAINER=()
fi
export SRFT_PYTHON
export PYTHONUNBUFFERED=1 SLURM_UNBUFFEREDIO=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}

# Network: NCCL between GPUs/nodes, gloo for CPU collectives. Only set what the user asked for;
# NCCL's own defaults (InfiniBand when present) are right on most clusters.
if [ -n "${SRFT_NET_IFNAME:-}" ]; then
  export NCCL_SOCKET_IFNAME=$SRFT_NET_IFNAME GLOO_SOCKET_IFNAME=$SRFT_NET_IFNAME
fi
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}
export CUDA_DEVICE_MAX_CONNECTIONS=${CUDA_DEVICE_MAX_CONNECTIONS:-1}  # megatron-core TP comm overlap

# Address of the first node of the allocation (the c10d rendezvous host). NodeAddr is what slurmd
# itself is reached on, so it works where node names do not resolve.
srft_head_node_addr() {
  local head
  head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
  scontrol show node -o "$head" | tr ' ' '\n' | sed -n 's/^NodeAddr=//p'
}

# Run "$@" (an srun line) in the background and wait for it, passing pre-emption signals on.
#  - SIGTERM (pre-emption, scancel, scontrol requeue): SLURM already signals every task; we only
#    keep the batch shell alive until the step has written its checkpoint and exited.
#  - SIGUSR1 (from `#SBATCH --signal=B:USR1@SECONDS`, before the time limit): SIGTERM to the
#    step's tasks (`scancel --signal`, not to srun itself: srun would cancel the step and SIGKILL
#    the tasks) so training checkpoints and exits; then requeue this job to resume from there.
srft_run_step() {
  "$@" &
  local pid=$! rc=0
  trap 'echo "srft: SIGTERM at $(date +%T): waiting for step $pid to checkpoint" >&2' TERM
  trap 'echo "srft: time limit near: checkpoint and requeue job $SLURM_JOB_ID" >&2;
        SRFT_REQUEUE=1; scancel --signal=TERM "$SLURM_JOB_ID" || true' USR1
  while :; do
    wait "$pid" && rc=0 || rc=$?
    kill -0 "$pid" 2>/dev/null || break   # wait returned early for a trapped signal
  done
  trap - TERM USR1
  if [ "${SRFT_REQUEUE:-0}" = 1 ]; then
    scontrol requeue "$SLURM_JOB_ID"
  fi
  return "$rc"
}

# A fresh random key (64 hex digits) on stdout: the per-job API key of critic/evaluate servers.
# Generated in memory and passed on in the environment, never on a command line or in a file.
srft_new_key() {
  od -An -N32 -tx1 /dev/urandom | tr -d ' \n'
}

srft_banner() {
  echo "srft: job ${SLURM_JOB_ID:-?} (${SLURM_JOB_NAME:-?}) restart ${SLURM_RESTART_COUNT:-0} on" \
       "${SLURM_JOB_NODELIST:-?} at $(date -u +%FT%TZ); run dir $SRFT_RUN_DIR" >&2
}

# One task on one node running `srft STAGE ARGS...` (preprocess, convert, evaluate, ingest).
# srft_megatron.launch.entry resolves run-time references such as @latest:DIR (the newest
# checkpoint named by DIR/latest) before handing over to the srft CLI.
srft_single_stage() {
  srft_run_step srun --nodes=1 --ntasks=1 --kill-on-bad-exit=1 "${SRUN_CONTAINER[@]}" \
    "$SRFT_PYTHON" -m srft_megatron.launch.entry "$@"
}
