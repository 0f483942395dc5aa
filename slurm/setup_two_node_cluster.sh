#!/usr/bin/env bash
# A real two-node SLURM cluster on one machine (Debian/Ubuntu, as root), for the multi-node tests:
# a controller `lcctl` and two compute nodes `lcnode1`, `lcnode2`, each in its own network namespace
# (own address on a private bridge, own hostname) and each node with its own node-local scratch
# mounted at the same path. Traffic stays on this machine. Idempotent; `stop` tears it down.
#
#   sudo bash slurm/setup_two_node_cluster.sh        # start (or check) the cluster, print sinfo
#   sudo bash slurm/setup_two_node_cluster.sh stop   # stop its daemons, remove namespaces + bridge
#
#   bridge lcbr0 10.77.0.1/24 (this machine, the "login node": sbatch / squeue run here)
#   netns lcctl   10.77.0.10  slurmctld          (hostname lcctl)
#   netns lcnode1 10.77.0.11  slurmd, node-local scratch /var/lib/longcot-cluster/lcnode1/scratch
#   netns lcnode2 10.77.0.12  slurmd, node-local scratch /var/lib/longcot-cluster/lcnode2/scratch
# Inside each node's mount namespace its scratch is bind-mounted on $SCRATCH (/var/tmp/longcot-scratch):
# the same path on both nodes, different files, like a compute node's local disk. Everything else
# (the repository, /tmp, run directories) is the machine's filesystem, shared by both nodes.
# Replaces a running single-node cluster of slurm/setup_local_cluster.sh (same /etc/slurm/slurm.conf).
set -euo pipefail
NET=10.77.0
NODES=(lcnode1 lcnode2)
STATE=/var/lib/longcot-cluster
SCRATCH=/var/tmp/longcot-scratch
CPUS=$(nproc)
MEM_MB=$(( ($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048) / 2 ))
PIDS="$STATE/run"

stop_cluster() {  # the daemons this script (or setup_local_cluster.sh) started, by their pid files
  local pids=() f p
  for f in "$PIDS"/*.pid /run/slurmctld.pid /run/slurmd.pid; do
    [ -s "$f" ] && pids+=("$(cat "$f")")
    rm -f "$f"
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 1 20); do  # a namespace (and its veth) lives until its last process exits
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && { sleep 0.5; continue 2; }; done
    break
  done
  for ns in lcctl "${NODES[@]}"; do ip netns del "$ns" 2>/dev/null || true; ip link del "v-$ns" 2>/dev/null || true; done
  ip link del lcbr0 2>/dev/null || true
  sed -i '/# longcot-two-node$/d' /etc/hosts
  # clients must not look for the controller's address off this machine once the bridge is gone
  grep -qs '^# longcot two-node test cluster' /etc/slurm/slurm.conf && rm -f /etc/slurm/slurm.conf
  return 0
}

if [ "${1:-}" = stop ]; then stop_cluster; exit 0; fi

# already up (both nodes answer, busy or not): leave it, and any jobs on it, alone
if ip link show lcbr0 >/dev/null 2>&1 \
   && [ "$(sinfo -h -N -o '%N %T' 2>/dev/null | grep -E '^lcnode[12] ' | grep -cvE 'down|unk|fail|drain|no_resp|\*')" = 2 ]; then
  sinfo; exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
   || ! command -v ip >/dev/null || ! command -v nsenter >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge iproute2 util-linux >/dev/null
fi
stop_cluster  # a half-started earlier attempt, or the single-node cluster

# --- network: a bridge on this machine, one veth pair per namespace
ip link add lcbr0 type bridge
ip addr add "$NET.1/24" dev lcbr0
ip link set lcbr0 up
i=10
for ns in lcctl "${NODES[@]}"; do
  ip netns add "$ns"
  ip link add "v-$ns" type veth peer name eth0 netns "$ns"
  ip link set "v-$ns" master lcbr0 up
  ip -n "$ns" addr add "$NET.$i/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  echo "$NET.$i $ns # longcot-two-node" >> /etc/hosts
  i=$((i + 1))
done

# --- munge (one key, one daemon: its socket is a file every namespace sees)
mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || su -s /bin/sh munge -c munged 2>/dev/null || munged --force

# --- slurm.conf (the same file for the daemons and for the clients on this machine)
mkdir -p /etc/slurm /var/log/slurm "$PIDS" "$STATE/ctld" "$SCRATCH"
cat > /etc/slurm/slurm.conf <<CONF
# longcot two-node test cluster (slurm/setup_two_node_cluster.sh)
ClusterName=longcot-2n
SlurmctldHost=lcctl($NET.10)
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=$PIDS/slurmctld.pid
SlurmdPidFile=$PIDS/slurmd-%n.pid
SlurmdSpoolDir=$STATE/%n/spool
StateSaveLocation=$STATE/ctld
SlurmUser=root
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldLogFile=/var/log/slurm/slurmctld-2n.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
InactiveLimit=0
KillWait=5
MinJobAge=300
TmpFS=$SCRATCH
NodeName=lcnode1 NodeAddr=$NET.11 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
NodeName=lcnode2 NodeAddr=$NET.12 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=lcnode1,lcnode2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF

# --- daemons: each in its namespace, with its own hostname (UTS) and, for the nodes, its own scratch.
# nsenter, not `ip netns exec`: that remounts /sys and hides the cgroup mounts slurmd needs.
nsenter --net=/run/netns/lcctl unshare --uts sh -c 'hostname lcctl && exec slurmctld'
for node in "${NODES[@]}"; do
  mkdir -p "$STATE/$node/spool" "$STATE/$node/scratch"
  nsenter --net="/run/netns/$node" unshare --uts --mount --propagation private \
    sh -c "hostname $node && mount --bind $STATE/$node/scratch $SCRATCH && exec slurmd"
done

for _ in $(seq 1 60); do
  if [ "$(sinfo -h -N -o '%N %T' 2>/dev/null | grep -cE 'lcnode[12] (idle|mix|alloc)')" = 2 ]; then
    sinfo; exit 0
  fi
  for node in "${NODES[@]}"; do scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true; done
  sleep 1
done
echo "the two-node SLURM cluster did not come up; see /var/log/slurm/slurmctld-2n.log, slurmd-lcnode*.log" >&2
exit 1
