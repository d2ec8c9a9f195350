#!/usr/bin/env bash
# A single-node Slurm cluster on localhost, for tests/test_slurm.py (and for trying the profile by hand).
#
#   tests/slurm/local_slurm.sh start|stop|status [SCRATCH]
#
# SCRATCH (default: $HI4DFIX_SLURM_SCRATCH, else /tmp/hi4dfix-slurm) holds the munge key and socket,
# Slurm's state, spool and logs, and the PIDs of the daemons this script started. The Slurm config is
# written to /etc/slurm/slurm.conf because jobs cannot find it anywhere else: Slurm's job step strips
# SLURM_CONF from the job's environment. A config there that this script did not write is never
# touched.
#
# Needs root and Debian's packages munge, slurmctld, slurmd and slurm-client (installed with apt-get
# when missing). Runs without systemd: the daemons are started directly and stopped by the PIDs
# recorded at start, so `stop` ends exactly what `start` started and nothing else.
#
# Settings (environment): HI4DFIX_SLURM_PARTITION (partition name, default "debug"),
# HI4DFIX_SLURM_CTLD_PORT / HI4DFIX_SLURM_SLURMD_PORT (defaults 6817 / 6818).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"   # the daemons live in sbin, missing from some PATHs

CONF=/etc/slurm/slurm.conf
MARKER="# written by hi4dfix tests/slurm/local_slurm.sh"
PACKAGES=(munge slurmctld slurmd slurm-client)
DAEMONS=(munged slurmctld slurmd)

usage() {
    echo "usage: $0 start|stop|status [SCRATCH]" >&2
    exit 2
}

die() {
    echo "local_slurm: $*" >&2
    exit 1
}

command_name=${1:-}
[ -n "$command_name" ] || usage
SCRATCH=${2:-${HI4DFIX_SLURM_SCRATCH:-/tmp/hi4dfix-slurm}}
PARTITION=${HI4DFIX_SLURM_PARTITION:-debug}
CTLD_PORT=${HI4DFIX_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${HI4DFIX_SLURM_SLURMD_PORT:-6818}
PIDS="$SCRATCH/pids"           # one file per daemon this script started: its PID
MUNGE_SOCKET="$SCRATCH/munge/munge.socket.2"
NODE=$(hostname -s)

# ---- helpers ---------------------------------------------------------------------------------

# PID recorded for a daemon, when that process is still alive and still that daemon
# (guards against a recycled PID).
live_pid() {
    local name=$1 pid
    [ -f "$PIDS/$name" ] || return 1
    pid=$(cat "$PIDS/$name")
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
    [ "$(cat "/proc/$pid/comm")" = "$name" ] || return 1
    echo "$pid"
}

# Wait until a daemon's own PID file names a live process, then record that PID.
record_pid() {
    local name=$1 pidfile=$2 pid
    for _ in $(seq 1 100); do
        if [ -s "$pidfile" ]; then
            pid=$(cat "$pidfile")
            if [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$name" ]; then
                echo "$pid" > "$PIDS/$name"
                return 0
            fi
        fi
        sleep 0.1
    done
    return 1
}

install_packages() {
    local missing=()
    command -v munged >/dev/null || missing+=(munge)
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    echo "local_slurm: installing ${missing[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
}

# The node line as slurmd sees this machine, with RealMemory lowered a little so the node is never
# refused for reporting less memory than configured.
node_line() {
    local line memory
    line=$(slurmd -C | head -n 1)
    memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$line")
    [ -n "$memory" ] || die "cannot read RealMemory from 'slurmd -C': $line"
    sed -e "s/RealMemory=[0-9]*/RealMemory=$((memory * 9 / 10))/" \
        -e "s/^NodeName=[^ ]*/NodeName=$NODE NodeAddr=127.0.0.1/" <<<"$line"
}

write_config() {
    if [ -e "$CONF" ] && ! grep -qxF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; refusing to replace it"
    fi
    mkdir -p "$(dirname "$CONF")"
    local tmp="$CONF.tmp.$$"
    cat > "$tmp" <<EOF
$MARKER
# scratch: $SCRATCH
ClusterName=hi4dfix-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# finished jobs stay visible to squeue (the tests' status command and records) for a day
MinJobAge=86400
ReturnToService=2
KillWait=5
InactiveLimit=0
MailProg=/bin/true
StateSaveLocation=$SCRATCH/state
SlurmdSpoolDir=$SCRATCH/spool
SlurmctldPidFile=$SCRATCH/run/slurmctld.pid
SlurmdPidFile=$SCRATCH/run/slurmd.pid
SlurmctldLogFile=$SCRATCH/log/slurmctld.log
SlurmdLogFile=$SCRATCH/log/slurmd.log
$(node_line) State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$tmp" "$CONF"
}

wait_for_idle_node() {
    local state=""
    for _ in $(seq 1 120); do
        state=$(sinfo --noheader --nodes="$NODE" --format=%T 2>/dev/null | head -n 1 || true)
        case "$state" in
            idle | mixed | allocated) return 0 ;;
        esac
        sleep 0.5
    done
    die "node $NODE did not become idle (state '$state'); see $SCRATCH/log"
}

# ---- commands --------------------------------------------------------------------------------

start() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (it starts munged, slurmctld and slurmd)"
    local running=0
    for daemon in "${DAEMONS[@]}"; do
        live_pid "$daemon" >/dev/null && running=$((running + 1))
    done
    if [ "$running" -eq ${#DAEMONS[@]} ]; then
        echo "local_slurm: already running (scratch $SCRATCH)"
        return 0
    fi
    [ "$running" -eq 0 ] || die "partly running from $SCRATCH; run '$0 stop $SCRATCH' first"
    local other
    other=$(sed -n 's/^# scratch: //p' "$CONF" 2>/dev/null || true)
    if [ -n "$other" ] && [ "$other" != "$SCRATCH" ] && grep -qxF "$MARKER" "$CONF" &&
        SCRATCH=$other PIDS=$other/pids live_pid slurmctld >/dev/null; then
        die "a cluster started from $other is running; run '$0 stop $other' first"
    fi

    install_packages
    # a fresh cluster each time: clear only the folders this script owns inside SCRATCH
    local sub
    for sub in state spool log run munge pids; do
        rm -rf "${SCRATCH:?}/$sub"
        mkdir -p "$SCRATCH/$sub"
    done
    chmod 700 "$SCRATCH/munge"

    # munge with its own key and socket, so a system munged (if any) is neither used nor disturbed
    mungekey --create --keyfile="$SCRATCH/munge/munge.key" --force
    chmod 600 "$SCRATCH/munge/munge.key"
    munged --force --socket="$MUNGE_SOCKET" --key-file="$SCRATCH/munge/munge.key" \
        --pid-file="$SCRATCH/run/munged.pid" --log-file="$SCRATCH/log/munged.log" \
        --seed-file="$SCRATCH/munge/munged.seed" 2>>"$SCRATCH/log/munged.stderr"
    record_pid munged "$SCRATCH/run/munged.pid" || die "munged did not start; see $SCRATCH/log/munged.log"

    write_config
    slurmctld -c 2>>"$SCRATCH/log/slurmctld.stderr"
    record_pid slurmctld "$SCRATCH/run/slurmctld.pid" || die "slurmctld did not start; see $SCRATCH/log/slurmctld.log"
    slurmd -N "$NODE" 2>>"$SCRATCH/log/slurmd.stderr"
    record_pid slurmd "$SCRATCH/run/slurmd.pid" || die "slurmd did not start; see $SCRATCH/log/slurmd.log"

    wait_for_idle_node
    echo "local_slurm: running (node $NODE, partition $PARTITION, config $CONF, scratch $SCRATCH)"
}

stop() {
    local pid
    # end jobs still queued or running (say, from an interrupted test), so no job step outlives
    # the daemons; only on this script's own cluster
    if live_pid slurmctld >/dev/null && grep -qxF "$MARKER" "$CONF" 2>/dev/null; then
        scancel --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 1 50); do
            [ -z "$(squeue --noheader --states=PENDING,RUNNING,COMPLETING 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    # reverse order of start: slurmd, slurmctld, then munged which both still talk to
    for daemon in slurmd slurmctld munged; do
        if pid=$(live_pid "$daemon"); then
            kill -TERM "$pid"
            for _ in $(seq 1 100); do
                [ -d "/proc/$pid" ] || break
                sleep 0.1
            done
            [ -d "/proc/$pid" ] && kill -KILL "$pid"
            echo "local_slurm: stopped $daemon ($pid)"
        fi
        rm -f "$PIDS/$daemon"
    done
    # only this scratch's config: a `stop` after a refused `start` (another scratch's cluster running)
    # must not take the running cluster's config away
    if [ -f "$CONF" ] && grep -qxF "$MARKER" "$CONF" && grep -qxF "# scratch: $SCRATCH" "$CONF"; then
        rm -f "$CONF"
    fi
}

status() {
    local pid down=0
    for daemon in "${DAEMONS[@]}"; do
        if pid=$(live_pid "$daemon"); then
            echo "$daemon: running ($pid)"
        else
            echo "$daemon: not running"
            down=1
        fi
    done
    [ "$down" -eq 0 ] && sinfo
    return "$down"
}

case "$command_name" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) usage ;;
esac
