#!/usr/bin/env bash
# A real two-node SLURM cluster on this one machine, for tests and for trying the launchers.
#
# Why: the sbatch scripts and nemo-run recipes under slurm/ and launch/ are only worth something
# if they run on real SLURM. The Debian build supports several slurmd on one host, so munge,
# slurmctld and two slurmd (nodes n1, n2, SLURM_NODEID 0/1) on loopback give a real 2-node
# cluster without root-owned state outside one directory. Facts behind the config:
# ../shared/notes/slurm-local-cluster.md.
#
#   bash scripts/slurm_cluster.sh start /tmp/slurm-ci   # installs packages if missing, starts daemons
#   source /tmp/slurm-ci/env.sh                         # SLURM_CONF + a `sacct` stand-in on PATH
#   sbatch -N 2 --wrap 'srun hostname'
#   bash scripts/slurm_cluster.sh stop /tmp/slurm-ci    # stops the daemons by PID
#
# Without accounting (slurmdbd) the real `sacct` fails; nemo-run polls job state with
# `sacct --parsable2 -j ID`, so env.sh puts a stand-in first on PATH that answers the same
# columns from `scontrol show job -o ID` (jobs stay in slurmctld memory for MinJobAge=600 s).
# Environment: SRFT_SLURM_CPUS (CPUs per node, default 2), SRFT_SLURM_PORT (slurmctld port, 16817;
# slurmd ports are PORT+100 and PORT+101).
set -euo pipefail

cmd=${1:?usage: slurm_cluster.sh start|stop|status DIR}
D=${2:?usage: slurm_cluster.sh start|stop|status DIR}
mkdir -p "$D"
D=$(cd "$D" && pwd)
CPUS=${SRFT_SLURM_CPUS:-2}
PORT=${SRFT_SLURM_PORT:-16817}
HOST=$(hostname -s)

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
     && command -v munged >/dev/null; then
    return
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "slurm_cluster.sh: SLURM is not installed and this is not root; install munge slurmctld slurmd slurm-client" >&2
    exit 1
  fi
  echo "installing munge + SLURM (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends munge slurmctld slurmd slurm-client >&2
}

write_config() {
  mkdir -p "$D"/{etc,state,run,log,munge,bin} "$D"/spool/n1 "$D"/spool/n2
  chmod 0755 "$D/munge"
  [ -s "$D/munge/munge.key" ] || dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
  chmod 0400 "$D/munge/munge.key"
  cat > "$D/etc/slurm.conf" <<CONF
ClusterName=localci
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 100))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/munge.socket.2
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/%n
SlurmdPidFile=$D/run/slurmd-%n.pid
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SchedulerParameters=kill_invalid_depend
MailProg=/bin/true
ReturnToService=2
MinJobAge=600
KillWait=30
AccountingStorageType=accounting_storage/none
NodeName=n[1-2] NodeHostname=$HOST NodeAddr=127.0.0.1 Port=[$((PORT + 100))-$((PORT + 101))] CPUs=$CPUS RealMemory=8000
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  cat > "$D/bin/sacct" <<'SACCT'
#!/usr/bin/env bash
# sacct stand-in (no accounting daemon here): `sacct [--parsable2] [...] -j ID[,ID]` answered from
# `scontrol show job -o`, columns JobID|JobName|Partition|Account|AllocCPUS|State|ExitCode.
ids=""
while [ $# -gt 0 ]; do
  case "$1" in
    -j|--jobs) ids=$2; shift 2 ;;
    -j*) ids=${1#-j}; shift ;;
    --jobs=*) ids=${1#--jobs=}; shift ;;
    *) shift ;;
  esac
done
echo "JobID|JobName|Partition|Account|AllocCPUS|State|ExitCode"
for id in ${ids//,/ }; do
  scontrol show job -o "$id" 2>/dev/null | awk '{
    delete f
    for (i = 1; i <= NF; i++) { p = index($i, "="); if (p) f[substr($i, 1, p - 1)] = substr($i, p + 1) }
    id = f["JobId"]
    if (f["ArrayJobId"] != "" && f["ArrayTaskId"] != "") id = f["ArrayJobId"] "_" f["ArrayTaskId"]
    print id "|" f["JobName"] "|" f["Partition"] "|" f["Account"] "|" f["NumCPUs"] "|" f["JobState"] "|" f["ExitCode"]
  }'
done
SACCT
  chmod +x "$D/bin/sacct"
  cat > "$D/env.sh" <<ENV
# source me: talk to the local test cluster in $D
export SLURM_CONF=$D/etc/slurm.conf
export PATH=$D/bin:\$PATH
ENV
}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  install_packages
  write_config
  export SLURM_CONF=$D/etc/slurm.conf
  if ! alive "$D/run/munged.pid"; then
    munged --key-file "$D/munge/munge.key" --socket "$D/munge/munge.socket.2" \
      --pid-file "$D/run/munged.pid" --log-file "$D/log/munged.log" --seed-file "$D/munge/munge.seed" --force
  fi
  alive "$D/run/slurmctld.pid" || slurmctld -i
  for n in n1 n2; do alive "$D/run/slurmd-$n.pid" || slurmd -N "$n"; done
  for _ in $(seq 1 150); do
    if scontrol ping >/dev/null 2>&1 && [ "$(sinfo -h -o '%T' 2>/dev/null | grep -c idle || true)" -ge 1 ] \
       && ! sinfo -h -N -o '%T' | grep -qvE '^idle'; then
      echo "SLURM cluster up in $D (nodes: $(sinfo -h -N -o '%N:%T' | tr '\n' ' '))" >&2
      return 0
    fi
    sleep 0.2
  done
  echo "slurm_cluster.sh: cluster did not come up; logs in $D/log" >&2
  tail -n 20 "$D"/log/*.log >&2 || true
  exit 1
}

stop() {
  for f in "$D"/run/slurmd-n1.pid "$D"/run/slurmd-n2.pid "$D"/run/slurmctld.pid "$D"/run/munged.pid; do
    if alive "$f"; then
      pid=$(cat "$f"); kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) export SLURM_CONF=$D/etc/slurm.conf; scontrol ping && sinfo -N ;;
  *) echo "usage: slurm_cluster.sh start|stop|status DIR" >&2; exit 2 ;;
esac
