#!/usr/bin/env bash
# The Ansible collection (deploy/ansible) on three hosts that share no filesystem state: each is a
# network namespace on a bridge of this test's own (10.213.N.0/24, nothing leaves the machine),
# with a PID and mount namespace whose root is an overlay over this machine's / with a private,
# empty upper layer (a package installed on one host is on no other), running sshd. vigil-h1's
# PID 1 is this machine's systemd, booted in its namespaces (tests/packaging/boot_systemd.sh), and
# the roles run its services with the packaged units (vigil_service_manager: systemd); vigil-h2
# and vigil-h3 run them under supervisord (vigil_service_manager: supervisor), the way of hosts
# whose PID 1 is no service manager. ansible-playbook connects to the hosts over SSH and:
#   1. deploys: CA-signed keys made on each host, the controller on h1, agents on h1..h3; every
#      agent connects over mutual TLS with its own certificate;
#   2. a second run changes nothing (changed=0 for every host);
#   3. an upgrade to a re-versioned build, tried with --check --diff first (it changes nothing),
#      then rolled host by host, each agent connected again before the next host;
#   4. a config vigil-agent refuses (validate:) fails the first host and stops the rollout; the
#      agent there keeps running with its old config and stays connected;
#   5. an agent that does not reconnect (its controller address a closed port) stops it too.
#   tests/deploy/ansible_test.sh BUILD_DIR        (root; exit 77: cannot run here)
set -euo pipefail
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (namespaces, mounts)"; exit 77; }
for tool in ansible-playbook sshd supervisord cpack; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] ||
    { echo "SKIP: $tool is not installed (scripts/install-deps.sh installs it)"; exit 77; }
done
# vigil-h1's systemd: a cgroup of its own in the cgroup2 hierarchy (beside cgroup v1 or alone).
CG2=
for d in /sys/fs/cgroup /sys/fs/cgroup/unified; do
  [ "$(stat -fc %T "$d" 2>/dev/null)" = cgroup2fs ] && { CG2=$d; break; }
done
[ -n "$CG2" ] && [ -x /lib/systemd/systemd ] ||
  { echo "SKIP: vigil-h1 boots systemd: needs /lib/systemd/systemd and a cgroup2 hierarchy"; exit 77; }
CG=$CG2/vigil-ansible-h1-$$

W=$(mktemp -d /tmp/vigil-ansible.XXXXXX)
TAG=$$
NET=10.213.$((TAG % 250))
BR=vgbr$TAG
HOSTS=(vigil-h1 vigil-h2 vigil-h3)
declare -A PID
cleanup() {
  set +e
  # unshare --fork ignores SIGTERM; SIGKILL takes its child, the PID namespace and all in it.
  for h in "${!PID[@]}"; do kill -9 "${PID[$h]}" 2>/dev/null; done
  wait 2>/dev/null
  for i in 1 2 3; do
    ip netns del "vg$TAG-h$i" 2>/dev/null
    umount -l "$W/h$i" 2>/dev/null
  done
  # The cgroups vigil-h1's systemd made, deepest first (they empty as its processes die).
  for _ in $(seq 50); do
    [ -d "$CG" ] || break
    find "$CG" -depth -type d -exec rmdir {} + 2>/dev/null
    sleep 0.1
  done
  ip link del "$BR" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
started=$(date +%s.%N)
elapsed() { echo "$(date +%s.%N) - $started" | bc; }

# The packages of this build (V1), and the same re-versioned V1+1: the upgrade. (Re-packing takes
# a second; a second cpack run half a minute.)
(cd "$BUILD" && cpack -G DEB -B "$W/out" >"$W/cpack.log" 2>&1) ||
  { cat "$W/cpack.log" >&2; fail "cpack could not build the packages"; }
mkdir "$W/debs"
V1=$(dpkg-deb -f "$W"/out/vigil-agent_*_amd64.deb Version)
V2=$V1+1
cp "$W"/out/*_"${V1}"_amd64.deb "$W/debs/"
for p in vigil-agent vigil-controller vigil; do
  rm -rf "$W/repack"
  dpkg-deb -R "$W/debs/${p}_${V1}_amd64.deb" "$W/repack"
  sed -i "s/^Version: .*/Version: $V2/" "$W/repack/DEBIAN/control"
  dpkg-deb -Zgzip -b "$W/repack" "$W/debs/${p}_${V2}_amd64.deb" >/dev/null
done
for v in "$V1" "$V2"; do
  [ -f "$W/debs/vigil-agent_${v}_amd64.deb" ] || fail "no vigil-agent $v: $(ls "$W/debs")"
done
echo "packages built: $(elapsed) s"

# The fleet CA: its key stays here, on the host running ansible-playbook.
"$SRC/scripts/dev-ca.sh" "$W/ca" >/dev/null
ssh-keygen -q -t ed25519 -N '' -f "$W/id" -C vigil-test
ssh-keygen -q -t ed25519 -N '' -f "$W/hostkey" -C vigil-test-host

ip link add "$BR" type bridge
ip addr add "$NET.1/24" dev "$BR"
ip link set "$BR" up
for i in 1 2 3; do
  h=vigil-h$i ns=vg$TAG-h$i root=$W/h$i
  ip netns add "$ns"
  ip link add "vg${TAG}h$i" type veth peer name eth0 netns "$ns"
  ip link set "vg${TAG}h$i" master "$BR" up
  ip -n "$ns" addr add "$NET.1$i/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  # The host's own layer, on a tmpfs of its own (an overlay's upper layer cannot live inside
  # its lower one).
  mkdir -p "$root"
  mount -t tmpfs -o size=1g,mode=0755 "tmpfs-$h" "$root"
  mkdir -p "$root"/{upper,work,merged} "$root/upper/etc/vigil-test"
  echo "$h" >"$root/upper/etc/hostname"
  cp "$W/hostkey" "$root/upper/etc/vigil-test/host_key"
  cp "$W/id.pub" "$root/upper/etc/vigil-test/authorized_keys"
  cat >"$root/upper/etc/vigil-test/sshd_config" <<SSHD
ListenAddress $NET.1$i
HostKey /etc/vigil-test/host_key
AuthorizedKeysFile /etc/vigil-test/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PidFile /run/sshd.pid
Subsystem sftp internal-sftp
SSHD
  # PID 1 of the host: its mounts, supervisord, then sshd. With it, everything it started goes.
  cat >"$W/boot-h$i.sh" <<BOOT
set -e
M=$root/merged
mount -t overlay overlay -o lowerdir=/,upperdir=$root/upper,workdir=$root/work \$M
mount -t proc proc \$M/proc
mount -t sysfs sysfs \$M/sys
mount --rbind /dev \$M/dev
mount -t tmpfs tmpfs \$M/run
mount -t tmpfs tmpfs \$M/tmp
mkdir -p \$M/run/sshd \$M/run/lock
exec chroot \$M /bin/sh -c 'hostname $h 2>/dev/null || true; supervisord -c /etc/supervisor/supervisord.conf && exec /usr/sbin/sshd -D -e -f /etc/vigil-test/sshd_config'
BOOT
  if [ "$i" = 1 ]; then
    # systemd as PID 1 (tests/packaging/boot_systemd.sh), starting sshd as a unit of its own.
    mkdir -p "$root/upper/etc/systemd/system"
    cat >"$root/upper/etc/systemd/system/vigil-test-sshd.service" <<UNIT
[Unit]
Description=sshd of the deployment test
[Service]
ExecStart=/usr/sbin/sshd -D -e -f /etc/vigil-test/sshd_config
RuntimeDirectory=sshd
UNIT
    mkdir "$CG"
    # Into the cgroup before ip netns exec, whose fresh /sys has no cgroup mounts.
    (
      echo "$BASHPID" >"$CG/cgroup.procs"
      exec ip netns exec "$ns" unshare -C -m -p -u --fork --kill-child --propagation private \
        sh "$SRC/tests/packaging/boot_systemd.sh" "$root" - vigil-test-sshd.service
    ) >"$W/boot-h$i.log" 2>&1 &
  else
    ip netns exec "$ns" unshare -m -p -u --fork --kill-child --propagation private \
      sh "$W/boot-h$i.sh" >"$W/boot-h$i.log" 2>&1 &
  fi
  PID[$h]=$!
done

cat >"$W/inventory.yml" <<INV
all:
  vars:
    ansible_user: root
    ansible_python_interpreter: /usr/bin/python3
    vigil_deb_dir: $W/debs
    vigil_version: $V1
    vigil_ca_host: ca
    vigil_ca_dir: $W/ca
    vigil_service_manager: supervisor
    vigil_controller_host: vigil-h1
    vigil_controller_address: $NET.11:7443
  hosts:
    ca: {ansible_connection: local}
  children:
    vigil_controller:
      hosts:
        vigil-h1: {ansible_host: $NET.11, vigil_service_manager: systemd}
    vigil_agents:
      vars:
        vigil_agent_labels: {env: test}
        vigil_agent_actions:
          clean_old_logs: {dirs: [/var/log], min_age: 2h}
      hosts:
        vigil-h1: {ansible_host: $NET.11, vigil_service_manager: systemd}
        vigil-h2: {ansible_host: $NET.12, vigil_agent_labels: {env: test, role: web}}
        vigil-h3:
          ansible_host: $NET.13
          vigil_agent_collectors: {host: {}, nginx: {access_log: /var/log/nginx/access.log}}
INV

export ANSIBLE_CONFIG=$SRC/deploy/ansible/ansible.cfg
export ANSIBLE_ROLES_PATH=$SRC/deploy/ansible/roles
export ANSIBLE_HOME=$W/ansible-home ANSIBLE_LOCAL_TEMP=$W/ansible-tmp
export ANSIBLE_PRIVATE_KEY_FILE=$W/id ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_FORKS=5
export ANSIBLE_SSH_ARGS="-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR -o ControlMaster=auto -o ControlPersist=120s -o ControlPath=$W/cm-%h"
export ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=False

for i in 1 2 3; do
  for _ in $(seq 150); do
    ssh -i "$W/id" $ANSIBLE_SSH_ARGS "root@$NET.1$i" true 2>/dev/null && break
    sleep 0.1
  done
  ssh -i "$W/id" $ANSIBLE_SSH_ARGS "root@$NET.1$i" true ||
    { cat "$W/boot-h$i.log" >&2; fail "vigil-h$i does not answer SSH"; }
done
echo "hosts up: $(elapsed) s"
on() {  # HOST COMMAND...: runs COMMAND on the test host over SSH
  local i=${1#vigil-h}
  shift
  ssh -i "$W/id" $ANSIBLE_SSH_ARGS "root@$NET.1$i" "$(printf '%q ' "$@")"
}
play() {  # LOG ARGS...: ansible-playbook, its output in $W/LOG
  local log=$1
  shift
  local t0 rc=0
  t0=$(date +%s.%N)
  ansible-playbook -i "$W/inventory.yml" "$SRC/deploy/ansible/playbooks/site.yml" "$@" \
    >"$W/$log" 2>&1 || rc=$?
  echo "ansible-playbook $log: rc $rc, $(echo "$(date +%s.%N) - $t0" | bc) s"
  return $rc
}
recap() {  # LOG HOST: the recap line of HOST
  grep -E "^$2 +:" "$W/$1" || echo "(no recap for $2)"
}
agents_json() {
  on vigil-h1 sh -c 'VIGIL_TOKEN=$(cat /etc/vigil/health.token) exec vigil \
    --controller 127.0.0.1:7443 --tls-ca /etc/vigil/tls/ca.pem \
    --tls-cert /etc/vigil/tls/health.pem --tls-key /etc/vigil/tls/health.key agents -o json'
}
connected() {  # the ids the controller lists as connected, sorted, on one line
  agents_json | python3 -c 'import json,sys
print(" ".join(sorted(a["agent_id"] for a in json.load(sys.stdin)["agents"] if a["state"] == "CONNECTED")))'
}
agent_pid() {
  if [ "$1" = vigil-h1 ]; then
    on "$1" systemctl show -p MainPID --value vigil-agent.service
  else
    on "$1" supervisorctl pid vigil-agent
  fi
}

# 1. The first deployment; a new fleet's agents may all go at once.
play deploy.log -e vigil_agent_serial=3 || { tail -40 "$W/deploy.log" >&2; fail "the first deployment failed"; }
[ "$(connected)" = "vigil-h1 vigil-h2 vigil-h3" ] ||
  fail "connected agents: '$(connected)', want vigil-h1 vigil-h2 vigil-h3"
for h in "${HOSTS[@]}"; do
  san=$(on "$h" openssl x509 -in /etc/vigil/tls/agent.pem -noout -ext subjectAltName | tail -1)
  [[ "$san" == *"DNS:$h" ]] || fail "$h's certificate names '$san', not DNS:$h"
  on "$h" openssl verify -CAfile /etc/vigil/tls/ca.pem /etc/vigil/tls/agent.pem >/dev/null ||
    fail "$h's certificate is not signed by the fleet CA"
  [ "$(on "$h" openssl pkey -in /etc/vigil/tls/agent.key -pubout)" = \
    "$(on "$h" openssl x509 -in /etc/vigil/tls/agent.pem -noout -pubkey)" ] ||
    fail "$h's certificate is not for its own key"
  on "$h" cmp -s /etc/vigil/controller-signing.pub /dev/stdin \
    < <(on vigil-h1 cat /var/lib/vigil/controller-signing.pub) ||
    fail "$h does not have the controller's public signing key"
done
# Keys stay where they were made: the CA folder holds no host key, the hosts no CA key.
ls "$W/ca" | grep -v -e '^ca\.' -e '^controller\.' && fail "host keys on the CA host"
on vigil-h2 test ! -e "$W/ca/ca.key" || fail "the CA key is visible on vigil-h2"
# No shared filesystem state: the controller's package is on h1 only, nothing is on this machine.
on vigil-h1 dpkg-query -W vigil-controller >/dev/null || fail "no vigil-controller on vigil-h1"
on vigil-h2 dpkg-query -W vigil-controller >/dev/null 2>&1 && fail "vigil-h1's package shows on vigil-h2"
[ -e /etc/vigil/agent.yaml ] && [ "$(grep -c 'id: vigil-h' /etc/vigil/agent.yaml)" != 0 ] &&
  fail "a test host's config landed on this machine"
on vigil-h3 grep -q 'access_log: /var/log/nginx/access.log' /etc/vigil/agent.yaml ||
  fail "vigil-h3's collectors are not in its agent.yaml"
on vigil-h2 grep -q 'role: web' /etc/vigil/agent.yaml || fail "vigil-h2's labels are not in its agent.yaml"
# vigil-h1: the daemons run under its systemd, from the packaged units the role enabled.
[ "$(on vigil-h1 cat /proc/1/comm)" = systemd ] || fail "vigil-h1's PID 1 is not systemd"
for u in vigil-controller vigil-agent; do
  [ "$(on vigil-h1 systemctl is-active $u.service)" = active ] || fail "$u.service is not active on vigil-h1"
  [ "$(on vigil-h1 systemctl is-enabled $u.service)" = enabled ] || fail "$u.service is not enabled on vigil-h1"
done
on vigil-h1 test -e /etc/supervisor/conf.d/vigil-agent.conf && fail "vigil-h1 has a supervisord program"
echo "deployed, 3 agents connected: $(elapsed) s"

# 2. Nothing to change the second time. (VIGIL_ANSIBLE_TEST_QUICK=1 skips 2 and the --check
# preview of 3: a quicker run of the rollout's stops.)
quick=${VIGIL_ANSIBLE_TEST_QUICK:-0}
[ "$quick" = 1 ] || play again.log -e vigil_agent_serial=3 || { tail -40 "$W/again.log" >&2; fail "the second run failed"; }
for h in "${HOSTS[@]}"; do
  [ "$quick" = 1 ] || recap again.log "$h" | grep -q ' changed=0 ' ||
    fail "second run: $(recap again.log "$h")"
done

# 3. The upgrade, previewed (nothing changes), then rolled host by host.
declare -A before
for h in "${HOSTS[@]}"; do before[$h]=$(agent_pid "$h"); done
if [ "$quick" != 1 ]; then
  play check.log --check --diff -e vigil_version=$V2 ||
    { tail -40 "$W/check.log" >&2; fail "--check --diff failed"; }
  recap check.log vigil-h2 | grep -q ' changed=0 ' && fail "--check shows no change for the upgrade"
fi
for h in "${HOSTS[@]}"; do
  [ "$(on "$h" dpkg-query -W -f='${Version}' vigil-agent)" = "$V1" ] || fail "--check upgraded $h"
done
play upgrade.log -e vigil_version=$V2 || { tail -40 "$W/upgrade.log" >&2; fail "the upgrade failed"; }
for h in "${HOSTS[@]}"; do
  [ "$(on "$h" dpkg-query -W -f='${Version}' vigil-agent)" = "$V2" ] || fail "$h not upgraded"
  [ "$(agent_pid "$h")" != "${before[$h]}" ] || fail "$h's agent was not restarted"
done
[ "$(connected)" = "vigil-h1 vigil-h2 vigil-h3" ] || fail "after the upgrade: '$(connected)'"
# Host by host: in the agents' play each host's tasks, the connection check last, come in one
# block before the next host's.
order=$(sed -n '/^PLAY \[Vigil agents/,$p' "$W/upgrade.log" |
  grep -oE '^(ok|changed): \[vigil-h[0-9]' | grep -oE 'h[0-9]' | uniq | tr '\n' ' ')
[ "$order" = "h1 h2 h3 " ] || fail "the upgrade did not go host by host: $order"
echo "upgraded host by host: $(elapsed) s"

# 4. A config the agent refuses: the first host fails, the rollout stops there, its agent keeps
# running with the config it had.
pid=$(agent_pid vigil-h1)
config=$(on vigil-h1 cat /etc/vigil/agent.yaml)
if play broken.log -e vigil_version=$V2 -e vigil_agent_interval=10ms; then
  fail "a config with interval 10ms went through"
fi
grep -q "failed to validate" "$W/broken.log" || { tail -30 "$W/broken.log" >&2; fail "not refused by validate:"; }
grep -q "must be at least 100ms" "$W/broken.log" || fail "the refusal does not say why"
[ "$(agent_pid vigil-h1)" = "$pid" ] || fail "vigil-h1's agent was restarted"
[ "$(on vigil-h1 cat /etc/vigil/agent.yaml)" = "$config" ] || fail "the refused config went live"
sed -n '/^PLAY \[Vigil agents/,/^PLAY RECAP/p' "$W/broken.log" | grep -qE '\[vigil-h[23]' &&
  fail "the rollout went on past the failed host"
[ "$(connected)" = "vigil-h1 vigil-h2 vigil-h3" ] || fail "after the refusal: '$(connected)'"
echo "refused config stopped the rollout: $(elapsed) s"

# 5. A config the agent takes but that does not reach the controller (a closed port): the first
# host's agent does not reconnect, the rollout stops there.
if play lost.log -e vigil_version=$V2 -e vigil_controller_address=$NET.11:1 \
    -e vigil_agent_connect_timeout=5; then
  fail "an agent that does not reconnect went through"
fi
grep -qE '^fatal: \[vigil-h1( -> vigil-h1)?\]: FAILED.*"attempts"' "$W/lost.log" ||
  { tail -30 "$W/lost.log" >&2; fail "the connection check did not fail on vigil-h1"; }
sed -n '/^PLAY \[Vigil agents/,/^PLAY RECAP/p' "$W/lost.log" | grep -qE '\[vigil-h[23]' &&
  fail "the rollout went on past the host that did not reconnect"
on vigil-h2 grep -q "controller: $NET.11:7443" /etc/vigil/agent.yaml || fail "vigil-h2 was changed"
echo "PASS: $(elapsed) s"
