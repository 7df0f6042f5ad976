#!/bin/sh
# A private one-node Slurm on this machine, for testing job templates (as root; Debian packages
# slurm-wlm and munge). Everything lives under DIR; the config is DIR/slurm.conf:
#   scripts/local-slurm.sh start DIR      then: export SLURM_CONF=DIR/slurm.conf; sbatch ...
#   scripts/local-slurm.sh stop DIR
set -eu
cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
DIR=$(mkdir -p "$DIR" && cd "$DIR" && pwd)
host=$(hostname -s)
case "$cmd" in
start)
    command -v slurmctld >/dev/null && command -v munged >/dev/null ||
        { echo "local-slurm: install the Debian packages slurm-wlm and munge" >&2; exit 3; }
    mkdir -p "$DIR/state" "$DIR/spool" /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    chmod 0755 /run/munge
    [ -f /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1k count=1 2>/dev/null;
        chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key; }
    pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
    cat >"$DIR/slurm.conf" <<CONF
ClusterName=ptlocal
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
KillWait=30
NodeName=$host CPUs=$(nproc --all) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$DIR/slurm.conf"
    # (nproc --all: plain nproc honours OMP_NUM_THREADS, which callers often set to 1)
    env -u OMP_NUM_THREADS slurmctld -f "$SLURM_CONF"
    env -u OMP_NUM_THREADS slurmd -f "$SLURM_CONF"
    for i in $(seq 1 50); do
        sinfo -h -o %T 2>/dev/null | grep -q idle && { echo "local-slurm: up ($SLURM_CONF)"; exit 0; }
        sleep 0.2
    done
    echo "local-slurm: the node did not become idle; see $DIR/slurmctld.log and $DIR/slurmd.log" >&2
    exit 1
    ;;
stop)
    for d in slurmd slurmctld; do
        [ -f "$DIR/$d.pid" ] && kill "$(cat "$DIR/$d.pid")" 2>/dev/null || true
    done
    sleep 0.5
    ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
