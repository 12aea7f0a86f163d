#!/usr/bin/env bash
# Time to roll Vigil out to N hosts with the Ansible collection (deploy/ansible), and, in the same
# run over the same SSH hosts, plain Ansible beside it: the floor of any rollout (an ad-hoc
# `ansible all -m command -a true`) and what a team would otherwise roll out, Debian's
# prometheus-node-exporter installed and started by a minimal playbook
# (bench/rollout_node_exporter.yml, the same means and settings as the Vigil roles).
#
# The hosts are those of the deploy test (tests/deploy/fleet_hosts.sh): network, mount and PID
# namespaces on this machine, each its own sshd and supervisord over an overlay root, reached
# over SSH on a bridge of their own. Steps, each timed from ansible-playbook's start to its exit:
#   Vigil first deployment   controller on h1 (certificates, config, service, viewer token), then
#                            the agents of all N hosts at once (a new fleet's may), each with its
#                            key made on the host, its certificate signed on the CA host, its
#                            config validated, its service started, and shown as connected
#   Vigil second run         the same, nothing to change (changed=0 is checked)
#   Vigil rolling upgrade    a re-versioned build, one host at a time (serial 1), each agent
#                            connected again before the next host
#   peer floor               ansible all -m command -a true (median of FLOOR_RUNS)
#   peer install / again / upgrade   the node exporter playbook: all hosts at once, the same
#                            again, then a re-versioned package host by host
# One run of each (a run of the whole takes minutes on a 2-core machine); absolute seconds move
# with the machine's load, so compare the ratios, which come from the same run.
#
#   bench/rollout.sh            # as root; BUILD=build N=3 FLOOR_RUNS=3 PROFILE=0 LOGS=
#
# BUILD: a build dir whose packages cpack makes (as the deploy test does); N: hosts (1..200);
# PROFILE=1: per-task times (ansible.posix.profile_tasks) in each playbook's log; LOGS=DIR: keep
# the playbooks' logs there. NODE_EXPORTER_DEB: the peer's .deb (default: apt-get download).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${BUILD:-$SRC/build}" && pwd)
N=${N:-3}
FLOOR_RUNS=${FLOOR_RUNS:-3}
PROFILE=${PROFILE:-0}
LOGS=${LOGS:-}
[ "$(id -u)" = 0 ] || { echo "bench/rollout.sh: needs root (namespaces, mounts)" >&2; exit 1; }
for tool in ansible ansible-playbook sshd supervisord cpack bc; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] ||
    { echo "bench/rollout.sh: $tool is not installed (scripts/install-deps.sh --deploy)" >&2; exit 1; }
done

W=$(mktemp -d /tmp/vigil-rollout.XXXXXX)
. "$SRC/tests/deploy/fleet_hosts.sh"
FLEET_LOGS=$LOGS
trap fleet_cleanup EXIT
# Namespaces vr<pid>-hI on 10.215.x.0/24: apart from the deploy test's (vg, 10.213).
fleet_init vr 10.215 "$N"

echo "== $(nproc) core(s), $(free -g | awk '/^Mem/{print $2}') GB, $(date -u +%FT%TZ)," \
  "$(ansible --version | sed -n 1p), $(ssh -V 2>&1 | cut -d, -f1)"
echo "== load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"

fleet_packages "$BUILD"
deb=${NODE_EXPORTER_DEB:-}
if [ -z "$deb" ]; then
  (cd "$W" && apt-get download prometheus-node-exporter >/dev/null 2>&1) ||
    fail "apt-get download prometheus-node-exporter failed (set NODE_EXPORTER_DEB=FILE.deb)"
  deb=$(ls "$W"/prometheus-node-exporter_*.deb)
fi
# The peer's upgrade: its package re-versioned, as the Vigil upgrade's is.
NE1=$(dpkg-deb -f "$deb" Version)
NE2=$NE1+1
mkdir "$W/ne"
cp "$deb" "$W/ne/ne1.deb"
dpkg-deb -R "$deb" "$W/repack"
sed -i "s/^Version: .*/Version: $NE2/" "$W/repack/DEBIAN/control"
dpkg-deb -Zgzip -b "$W/repack" "$W/ne/ne2.deb" >/dev/null
rm -rf "$W/repack"

fleet_keys
fleet_boot
{
  fleet_inventory
  echo "    vigil_agents:"
  echo "      vars: {vigil_agent_labels: {env: bench}}"
  echo "      hosts:"
  for h in "${HOSTS[@]}"; do echo "        $h: {ansible_host: $(fleet_ip "$h")}"; done
} >"$W/inventory.yml"
{
  echo "all:"
  echo "  vars: {ansible_user: root, ansible_python_interpreter: /usr/bin/python3}"
  echo "  hosts:"
  for h in "${HOSTS[@]}"; do echo "    $h: {ansible_host: $(fleet_ip "$h")}"; done
} >"$W/peer.yml"
fleet_ansible_env
[ "$PROFILE" = 1 ] && export ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks
fleet_wait_ssh
echo "== $N hosts up"

declare -A T  # step -> seconds
declare -A TASKS  # step -> tasks run per host (the recap's ok, averaged over the hosts)
tasks_per_host() {  # LOG: the mean of ok= over the N hosts' recap lines
  local h sum=0
  for h in "${HOSTS[@]}"; do
    sum=$((sum + $(recap "$1" "$h" | sed -n 's/.* ok=\([0-9]*\) .*/\1/p' | grep . || echo 0)))
  done
  echo "scale=1; $sum / $N" | bc
}
step() {  # NAME LOG ARGS...: play, keep its time and tasks; a failed play ends the bench
  local name=$1 log=$2
  shift 2
  echo "== $name (load $(cut -d' ' -f1 /proc/loadavg))"
  play "$log" "$@" || { tail -30 "$W/$log" >&2; fail "$name failed"; }
  T[$name]=$(cat "$W/$log.s")
  TASKS[$name]=$(tasks_per_host "$log")
}
all_changed0() {  # LOG: every host's recap says changed=0
  local h
  for h in "${HOSTS[@]}"; do
    recap "$1" "$h" | grep -q ' changed=0 ' || fail "not idempotent: $(recap "$1" "$h")"
  done
}
want_connected() {
  local want
  want=$(printf '%s\n' "${HOSTS[@]}" | sort | tr '\n' ' ' | sed 's/ $//')
  [ "$(connected)" = "$want" ] || fail "connected agents: '$(connected)', want '$want'"
}

# --- Vigil -----------------------------------------------------------------------------------
step vigil_deploy deploy.log -e vigil_agent_serial="$N"
want_connected
step vigil_again again.log -e vigil_agent_serial="$N"
all_changed0 again.log
step vigil_upgrade upgrade.log -e vigil_version="$V2"
want_connected
for h in "${HOSTS[@]}"; do
  [ "$(on "$h" dpkg-query -W -f='${Version}' vigil-agent)" = "$V2" ] || fail "$h not upgraded"
done

# --- The peer, on the same hosts -------------------------------------------------------------
echo "== peer floor: ansible all -m command -a true, $FLOOR_RUNS run(s) (load $(cut -d' ' -f1 /proc/loadavg))"
floor=()
for r in $(seq 1 "$FLOOR_RUNS"); do
  t0=$(date +%s.%N)
  ansible all -i "$W/peer.yml" -m command -a true >"$W/floor-$r.log" 2>&1 ||
    { cat "$W/floor-$r.log" >&2; fail "ansible all -m command -a true failed"; }
  floor+=("$(echo "$(date +%s.%N) - $t0" | bc)")
done
echo "   ${floor[*]} s"
T[peer_floor]=$(printf '%s\n' "${floor[@]}" | sort -n | sed -n "$(((FLOOR_RUNS + 1) / 2))p")
TASKS[peer_floor]=1
PLAYBOOK=$SRC/bench/rollout_node_exporter.yml
peer() {  # NAME LOG DEB SERIAL
  INVENTORY=$W/peer.yml step "$1" "$2" -e node_exporter_deb="$3" -e node_exporter_serial="$4"
}
peer peer_install ne-install.log "$W/ne/ne1.deb" "$N"
peer peer_again ne-again.log "$W/ne/ne1.deb" "$N"
all_changed0 ne-again.log
peer peer_upgrade ne-upgrade.log "$W/ne/ne2.deb" 1
for h in "${HOSTS[@]}"; do
  [ "$(on "$h" dpkg-query -W -f='${Version}' prometheus-node-exporter)" = "$NE2" ] ||
    fail "$h's node exporter not upgraded"
  on "$h" /usr/bin/python3 -c 'import socket; socket.create_connection(("127.0.0.1", 9100))' ||
    fail "$h's node exporter does not listen"
done
echo "== load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- The table -------------------------------------------------------------------------------
per() { echo "scale=1; $1 / $N" | bc | sed 's/^\./0./'; }
ratio() { echo "scale=2; $1 / $2" | bc | sed 's/^\./0./'; }
row() {  # LABEL STEP PEER_STEP
  local t=${T[$2]} tasks=${TASKS[$2]} vs=-
  [ -n "${3:-}" ] && vs="$(ratio "$t" "${T[$3]}")x"
  printf '| %-63s | %7.1f | %8s | %5s | %7s |\n' "$1" "$t" "$(per "$t")" "$tasks" "$vs"
}
echo
echo "Rollout to N=$N hosts over SSH, one run (several are too slow here; the seconds move with"
echo "the machine's load, the ratios come from this one run). Per host: total / N. Tasks: run per"
echo "host (recap ok=, mean over the hosts; vigil-h1 also runs the controller's). vs peer: Vigil"
echo "over the node exporter playbook doing the same step."
echo
printf '| %-63s | %7s | %8s | %5s | %7s |\n' step "total s" "per host" tasks "vs peer"
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..65})" --------: ---------: ------: --------:
row "Vigil: first deployment (controller, agents, certs, connected)" vigil_deploy peer_install
row "Vigil: second run (changed=0)" vigil_again peer_again
row "Vigil: rolling upgrade (serial 1, reconnected before the next)" vigil_upgrade peer_upgrade
row "peer: ansible all -m command -a true (SSH floor, median)" peer_floor
row "peer: node exporter installed and started (all at once)" peer_install
row "peer: node exporter second run (changed=0)" peer_again
row "peer: node exporter upgrade (serial 1, listening before next)" peer_upgrade
echo
echo "Vigil first deployment over the floor: $(ratio "${T[vigil_deploy]}" "${T[peer_floor]}")x;" \
  "rolling upgrade over the floor: $(ratio "${T[vigil_upgrade]}" "${T[peer_floor]}")x"
