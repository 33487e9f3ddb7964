#!/usr/bin/env bash
# A one-node Slurm cluster on localhost, for trying deploy/slurm/*.sbatch for real (and for
# .ci/run): installs Debian's slurm-wlm and munge when missing, writes a minimal slurm.conf
# for this machine (no cgroups, no accounting), starts munged, slurmctld and slurmd, and
# waits until the node takes jobs. Run as root on a machine that is yours to configure: it
# replaces /etc/slurm/slurm.conf. `local-cluster.sh stop` stops the daemons again.
set -euo pipefail

conf=/etc/slurm/slurm.conf
if [ "${1:-start}" = stop ]; then
    for daemon in slurmd slurmctld munged; do
        pkill -x "$daemon" || true
        for _ in $(seq 100); do pgrep -x "$daemon" >/dev/null || break; sleep 0.1; done
    done
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# munge: authenticates the daemons to each other; one key, readable by munge only.
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile /etc/munge/munge.key
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null

host=$(hostname -s)
# Leave the system some memory; jobs may ask for what is left.
memory=$(( $(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) * 9 / 10 ))
# The node as slurmd sees this machine's sockets, cores and threads.
node=$(slurmd -C | head -1 | sed -E "s/RealMemory=[0-9]+/RealMemory=$memory/")
install -d /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat >"$conf" <<EOF
# Written by deploy/slurm/local-cluster.sh: one node, localhost only.
ClusterName=epitome-local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdTimeout=60
$node State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 100); do
    state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
    case "$state" in idle | mixed | allocated) break ;; esac
    sleep 0.2
done
case "$state" in
    idle | mixed | allocated) echo "slurm: node $host is $state ($(nproc) CPUs, ${memory} MB)" ;;
    *)
        echo "slurm: node $host did not come up (state: ${state:-none}); see /var/log/slurm/" >&2
        exit 1
        ;;
esac
