# Test hosts for the Ansible collection, sourced by tests/deploy/ansible_test.sh and
# bench/rollout.sh. Each host is a network namespace on a bridge of the caller's own
# (NET.0/24, nothing leaves the machine), with a PID and mount namespace whose root is an overlay
# over this machine's / with a private, empty upper layer (a package installed on one host is on
# no other), running sshd and supervisord (vigil_service_manager: supervisor). With
# FLEET_SYSTEMD_H1=1, vigil-h1's PID 1 is instead this machine's systemd, booted in its
# namespaces (tests/packaging/boot_systemd.sh), which starts its sshd, and the roles run its
# services with the packaged units (vigil_service_manager: systemd); fleet_systemd_ok says whether
# this machine can boot it.
#
#   W=$(mktemp -d ...); SRC=...; . tests/deploy/fleet_hosts.sh
#   trap fleet_cleanup EXIT        # FLEET_LOGS=DIR: the playbooks' logs are kept there
#   fleet_init PREFIX NET N     # e.g. vg 10.213 3: namespaces PREFIX<pid>-hI, hosts vigil-h1..hN
#   fleet_packages BUILD        # $W/debs: this build's packages (V1) and the same re-versioned (V2)
#   fleet_keys; fleet_boot; fleet_ansible_env; fleet_wait_ssh
#   fleet_inventory >inv.yml    # all.vars, the CA host, the controller on vigil-h1; the caller
#                               # appends its vigil_agents group
# Then: on HOST CMD..., play LOG ARGS..., recap LOG HOST, connected, agent_pid HOST.

fail() { echo "FAIL: $*" >&2; exit 1; }
declare -A FLEET_PID=()
FLEET_N=0
FLEET_SYSTEMD_H1=${FLEET_SYSTEMD_H1:-0}
FLEET_CG=

# True when vigil-h1 can boot systemd here: /lib/systemd/systemd and a cgroup2 hierarchy (beside
# cgroup v1 or alone), in which its systemd gets a cgroup of its own ($FLEET_CG).
fleet_systemd_ok() {
  local d
  for d in /sys/fs/cgroup /sys/fs/cgroup/unified; do
    if [ "$(stat -fc %T "$d" 2>/dev/null)" = cgroup2fs ] && [ -x /lib/systemd/systemd ]; then
      FLEET_CG=$d/vigil-fleet-h1-$$
      return 0
    fi
  done
  return 1
}

fleet_init() {  # PREFIX NET N
  FLEET_PREFIX=$1
  FLEET_TAG=$$
  NET=$2.$((FLEET_TAG % 250))
  FLEET_N=$3
  BR=${FLEET_PREFIX}br$FLEET_TAG
  HOSTS=()
  for i in $(seq 1 "$FLEET_N"); do HOSTS+=("vigil-h$i"); done
  PLAYBOOK=${PLAYBOOK:-$SRC/deploy/ansible/playbooks/site.yml}
}

fleet_ip() { echo "$NET.$((10 + ${1#vigil-h}))"; }  # HOST (vigil-hI): its address, NET.(10+I)

fleet_cleanup() {  # ends the hosts; keeps the playbooks' logs in $FLEET_LOGS if set
  set +e
  [ -n "${FLEET_LOGS:-}" ] && mkdir -p "$FLEET_LOGS" && cp "$W"/*.log "$FLEET_LOGS/" 2>/dev/null
  # unshare --fork ignores SIGTERM; SIGKILL takes its child, the PID namespace and all in it.
  for h in "${!FLEET_PID[@]}"; do kill -9 "${FLEET_PID[$h]}" 2>/dev/null; done
  wait 2>/dev/null
  for i in $(seq 1 "$FLEET_N"); do
    ip netns del "$FLEET_PREFIX$FLEET_TAG-h$i" 2>/dev/null
    umount -l "$W/h$i" 2>/dev/null
  done
  # The cgroups vigil-h1's systemd made, deepest first (they empty as its processes die).
  for _ in $(seq 50); do
    [ -n "$FLEET_CG" ] && [ -d "$FLEET_CG" ] || break
    find "$FLEET_CG" -depth -type d -exec rmdir {} + 2>/dev/null
    sleep 0.1
  done
  [ -n "${BR:-}" ] && ip link del "$BR" 2>/dev/null
  rm -rf "$W"
}

# The packages of this build (V1), and the same re-versioned V1+1: the upgrade. (Re-packing takes
# a second; a second cpack run half a minute.)
fleet_packages() {  # BUILD
  (cd "$1" && cpack -G DEB -B "$W/out" >"$W/cpack.log" 2>&1) ||
    { cat "$W/cpack.log" >&2; fail "cpack could not build the packages"; }
  mkdir "$W/debs"
  V1=$(dpkg-deb -f "$W"/out/vigil-agent_*_amd64.deb Version)
  V2=$V1+1
  cp "$W"/out/*_"${V1}"_amd64.deb "$W/debs/"
  local p v
  for p in vigil-agent vigil-controller vigil; do
    rm -rf "$W/repack"
    dpkg-deb -R "$W/debs/${p}_${V1}_amd64.deb" "$W/repack"
    sed -i "s/^Version: .*/Version: $V2/" "$W/repack/DEBIAN/control"
    dpkg-deb -Zgzip -b "$W/repack" "$W/debs/${p}_${V2}_amd64.deb" >/dev/null
  done
  rm -rf "$W/repack" "$W/out"
  for v in "$V1" "$V2"; do
    [ -f "$W/debs/vigil-agent_${v}_amd64.deb" ] || fail "no vigil-agent $v: $(ls "$W/debs")"
  done
}

# The fleet CA (its key stays here, on the host running ansible-playbook), the SSH keys.
fleet_keys() {
  "$SRC/scripts/dev-ca.sh" "$W/ca" >/dev/null
  ssh-keygen -q -t ed25519 -N '' -f "$W/id" -C vigil-test
  ssh-keygen -q -t ed25519 -N '' -f "$W/hostkey" -C vigil-test-host
}

fleet_boot() {
  ip link add "$BR" type bridge
  ip addr add "$NET.1/24" dev "$BR"
  ip link set "$BR" up
  local i h ns root
  for i in $(seq 1 "$FLEET_N"); do
    h=vigil-h$i ns=$FLEET_PREFIX$FLEET_TAG-h$i root=$W/h$i
    ip netns add "$ns"
    ip link add "$FLEET_PREFIX${FLEET_TAG}h$i" type veth peer name eth0 netns "$ns"
    ip link set "$FLEET_PREFIX${FLEET_TAG}h$i" master "$BR" up
    ip -n "$ns" addr add "$(fleet_ip "$h")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    # The host's own layer, on a tmpfs of its own (an overlay's upper layer cannot live inside
    # its lower one).
    mkdir -p "$root"
    mount -t tmpfs -o size=1g,mode=0755 "tmpfs-$h" "$root"
    mkdir -p "$root"/{upper,work,merged} "$root/upper/etc/vigil-test"
    echo "$h" >"$root/upper/etc/hostname"
    # root's shell as on a new Debian host: sshd runs every command through it, and bash reads
    # ~/.bashrc then, so whatever this machine's root has there (a pyenv init costs a second and
    # more) would be paid on every Ansible task.
    install -d -m 0700 "$root/upper/root"
    install -m 0644 /etc/skel/.bashrc /etc/skel/.profile "$root/upper/root/"
    cp "$W/hostkey" "$root/upper/etc/vigil-test/host_key"
    cp "$W/id.pub" "$root/upper/etc/vigil-test/authorized_keys"
    cat >"$root/upper/etc/vigil-test/sshd_config" <<SSHD
ListenAddress $(fleet_ip "$h")
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
    if [ "$i" = 1 ] && [ "$FLEET_SYSTEMD_H1" = 1 ]; then
      # systemd as PID 1 (tests/packaging/boot_systemd.sh), starting sshd as a unit of its own.
      mkdir -p "$root/upper/etc/systemd/system"
      cat >"$root/upper/etc/systemd/system/vigil-test-sshd.service" <<UNIT
[Unit]
Description=sshd of the deployment test
[Service]
ExecStart=/usr/sbin/sshd -D -e -f /etc/vigil-test/sshd_config
RuntimeDirectory=sshd
UNIT
      [ -n "$FLEET_CG" ] || fleet_systemd_ok || fail "vigil-h1 cannot boot systemd here"
      mkdir "$FLEET_CG"
      # Into the cgroup before ip netns exec, whose fresh /sys has no cgroup mounts.
      (
        echo "$BASHPID" >"$FLEET_CG/cgroup.procs"
        exec ip netns exec "$ns" unshare -C -m -p -u --fork --kill-child --propagation private \
          sh "$SRC/tests/packaging/boot_systemd.sh" "$root" - vigil-test-sshd.service
      ) >"$W/boot-h$i.log" 2>&1 &
    else
      ip netns exec "$ns" unshare -m -p -u --fork --kill-child --propagation private \
        sh "$W/boot-h$i.sh" >"$W/boot-h$i.log" 2>&1 &
    fi
    FLEET_PID[$h]=$!
  done
}

fleet_ansible_env() {
  export ANSIBLE_CONFIG=$SRC/deploy/ansible/ansible.cfg
  export ANSIBLE_ROLES_PATH=$SRC/deploy/ansible/roles
  export ANSIBLE_HOME=$W/ansible-home ANSIBLE_LOCAL_TEMP=$W/ansible-tmp
  export ANSIBLE_PRIVATE_KEY_FILE=$W/id ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_FORKS=5
  export ANSIBLE_SSH_ARGS="-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR -o ControlMaster=auto -o ControlPersist=120s -o ControlPath=$W/cm-%h"
  export ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=False
}

fleet_wait_ssh() {
  local h
  for h in "${HOSTS[@]}"; do
    for _ in $(seq 150); do  # a booting systemd takes a few seconds to start sshd
      ssh -i "$W/id" $ANSIBLE_SSH_ARGS "root@$(fleet_ip "$h")" true 2>/dev/null && break
      sleep 0.1
    done
    ssh -i "$W/id" $ANSIBLE_SSH_ARGS "root@$(fleet_ip "$h")" true ||
      { cat "$W/boot-h${h#vigil-h}.log" >&2; fail "$h does not answer SSH"; }
  done
}

fleet_inventory() {  # prints all.vars, the CA host and the controller group; vigil_agents is the caller's
  cat <<INV
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
    vigil_controller_address: $(fleet_ip vigil-h1):7443
    # The controller's audit key lands in this run's folder, not beside the playbook in the
    # source tree, where runs at the same time would overwrite each other's.
    vigil_audit_public_key_dest: $W/audit-keys/{{ inventory_hostname }}.pub
  hosts:
    ca: {ansible_connection: local}
  children:
    vigil_controller:
      hosts:
        vigil-h1: {ansible_host: $(fleet_ip vigil-h1)$(fleet_h1_vars)}
INV
}
# vigil-h1's own variables after its address (a host's variables hold in every group).
fleet_h1_vars() { [ "$FLEET_SYSTEMD_H1" = 1 ] && echo ", vigil_service_manager: systemd" || true; }

on() {  # HOST COMMAND...: runs COMMAND on the test host over SSH
  local h=$1
  shift
  ssh -i "$W/id" $ANSIBLE_SSH_ARGS "root@$(fleet_ip "$h")" "$(printf '%q ' "$@")"
}
play() {  # LOG ARGS...: ansible-playbook $PLAYBOOK on $INVENTORY ($W/inventory.yml), its output
  local log=$1  # in $W/LOG, its seconds in $W/LOG.s
  shift
  local t0 rc=0 s
  t0=$(date +%s.%N)
  ansible-playbook -i "${INVENTORY:-$W/inventory.yml}" "$PLAYBOOK" "$@" >"$W/$log" 2>&1 || rc=$?
  s=$(echo "$(date +%s.%N) - $t0" | bc)
  echo "$s" >"$W/$log.s"
  echo "ansible-playbook $log: rc $rc, $s s"
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
  if [ "$1" = vigil-h1 ] && [ "$FLEET_SYSTEMD_H1" = 1 ]; then
    on "$1" systemctl show -p MainPID --value vigil-agent.service
  else
    on "$1" supervisorctl pid vigil-agent
  fi
}
