#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for gleaner's Slurm test and for trying the Slurm
# executor locally (Debian 12: slurmctld, slurmd, slurm-client and munge from apt; no systemd).
#
#   scripts/slurm-local.sh up      # install if needed, configure, start, wait for the node
#   scripts/slurm-local.sh down    # cancel jobs, stop the daemons this script started
#   scripts/slurm-local.sh status  # sinfo and squeue
#
# Must run as root. State, logs and pid files live under $SLURM_BASE (default
# /tmp/gleaner-slurm); the config goes to /etc/slurm/slurm.conf so sbatch needs no SLURM_CONF.
# The cluster requeues tasks that exit 75 (RequeueExit=75, retried after about 6 s thanks to
# cred_expire=5), cancels jobs whose dependencies can never be met (kill_invalid_depend),
# and counts CPUs only (CR_CPU), so array tasks run side by side. SLURM_CPUS advertises more
# CPUs than the machine has (default: 4, so four map tasks run at once on 2 cores).
set -euo pipefail

base=${SLURM_BASE:-/tmp/gleaner-slurm}
node=gleaner1
conf=/etc/slurm/slurm.conf

say() { printf '[slurm-local] %s\n' "$*"; }
fail() { say "error: $*" >&2; exit 1; }
alive() { # alive NAME PIDFILE: the pid file names a live process called NAME
    local pid
    pid=$(cat "$2" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}
stop() { # stop NAME PIDFILE
    alive "$1" "$2" || return 0
    local pid
    pid=$(cat "$2")
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}
await() { # await NAME PIDFILE: daemons write their pid file just after forking
    for _ in $(seq 100); do alive "$1" "$2" && return 0; sleep 0.05; done
    tail -n 20 "$base/log/$1.log" >&2 || true
    fail "$1 did not start"
}

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
        command -v sbatch >/dev/null && command -v munged >/dev/null && return 0
    say "installing slurmctld slurmd slurm-client munge"
    export DEBIAN_FRONTEND=noninteractive
    local policy=0
    # Keep dpkg from starting the services (they would start without a config).
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
    [ "$policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    return 0
}

start_munge() {
    [ -s /etc/munge/munge.key ] || {
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    }
    chown -R munge:munge /etc/munge
    chmod 0700 /etc/munge
    chmod 0400 /etc/munge/munge.key
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    runuser -u munge -- /usr/sbin/munged --force
    touch "$base/run/munged.started-here"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0; sleep 0.1; done
    fail "munged did not start"
}

config() {
    local hw cpus mem
    hw=$(slurmd -C | head -1)
    cpus=${SLURM_CPUS:-4}
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
    mem=$((mem * 8 / 10))
    [ "$mem" -gt 8000 ] && mem=8000
    cat <<EOF
# gleaner scripts/slurm-local.sh: a one-node test cluster
ClusterName=gleaner
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=5
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$base/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=2,bf_interval=1
DependencyParameters=kill_invalid_depend
RequeueExit=75
ReturnToService=2
MinJobAge=3600
SlurmdParameters=config_overrides
SlurmctldPidFile=$base/run/slurmctld.pid
SlurmdPidFile=$base/run/slurmd.pid
StateSaveLocation=$base/state
SlurmdSpoolDir=$base/spool
SlurmctldLogFile=$base/log/slurmctld.log
SlurmdLogFile=$base/log/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

up() {
    [ "$(id -u)" = 0 ] || fail "run as root"
    install_packages
    mkdir -p "$base"/{state,spool,log,run} /etc/slurm
    start_munge
    local want
    want=$(config)
    if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
        printf '%s\n' "$want" >"$conf"
        stop slurmd "$base/run/slurmd.pid"
        stop slurmctld "$base/run/slurmctld.pid"
    fi
    alive slurmctld "$base/run/slurmctld.pid" || { slurmctld; await slurmctld "$base/run/slurmctld.pid"; }
    alive slurmd "$base/run/slurmd.pid" || { slurmd -N "$node"; await slurmd "$base/run/slurmd.pid"; }
    local state=""
    for _ in $(seq 600); do
        state=$(sinfo -h -n "$node" -o %T 2>/dev/null || true)
        case "$state" in
        idle | mixed | allocated) say "node $node is $state"; return 0 ;;
        drain* | down* | inval*) scontrol update nodename="$node" state=resume 2>/dev/null || true ;;
        esac
        sleep 0.1
    done
    tail -n 20 "$base/log/slurmctld.log" "$base/log/slurmd.log" >&2 || true
    fail "node $node not ready (state '$state')"
}

down() {
    if alive slurmctld "$base/run/slurmctld.pid"; then
        local jobs
        jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
        if [ -n "${jobs// /}" ]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 100); do squeue -h 2>/dev/null | grep -q . || break; sleep 0.1; done
        fi
    fi
    stop slurmd "$base/run/slurmd.pid"
    stop slurmctld "$base/run/slurmctld.pid"
    if [ -f "$base/run/munged.started-here" ]; then
        stop munged /run/munge/munged.pid
        rm -f "$base/run/munged.started-here"
    fi
    say "stopped"
}

case "${1:-}" in
up) up ;;
down) down ;;
status) sinfo && squeue ;;
*) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
