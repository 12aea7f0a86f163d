#!/usr/bin/env bash
# The Ansible collection (deploy/ansible) on three hosts that share no filesystem state (made by
# fleet_hosts.sh, which bench/rollout.sh shares): each is a network namespace on a bridge of this
# test's own (10.213.N.0/24, nothing leaves the machine), with a PID and mount namespace whose
# root is an overlay over this machine's / with a private, empty upper layer (a package installed
# on one host is on no other), running sshd. vigil-h1's PID 1 is this machine's systemd, booted in
# its namespaces (tests/packaging/boot_systemd.sh), and the roles run its services with the
# packaged units (vigil_service_manager: systemd); vigil-h2 and vigil-h3 run them under
# supervisord (vigil_service_manager: supervisor), the way of hosts whose PID 1 is no service
# manager. ansible-playbook connects to the hosts over SSH and:
#   1. deploys: CA-signed keys made on each host, the controller on h1, agents on h1..h3; every
#      agent connects over mutual TLS with its own certificate;
#   2. a second run changes nothing (changed=0 for every host);
#   3. an upgrade to a re-versioned build, tried with --check --diff first (it changes nothing),
#      then rolled host by host, each agent connected again before the next host;
#   4. a config vigil-agent refuses (validate:) fails the first host and stops the rollout; the
#      agent there keeps running with its old config and stays connected;
#   5. an agent that does not reconnect (its controller address a closed port) stops it too;
#   6. the agents move to a port of their own (vigil_controller_agent_port), controller first.
#   tests/deploy/ansible_test.sh BUILD_DIR        (root; exit 77: cannot run here)
set -euo pipefail
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (namespaces, mounts)"; exit 77; }
for tool in ansible-playbook sshd supervisord cpack; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] ||
    { echo "SKIP: $tool is not installed (scripts/install-deps.sh installs it)"; exit 77; }
done

. "$SRC/tests/deploy/fleet_hosts.sh"
FLEET_SYSTEMD_H1=1
fleet_systemd_ok ||
  { echo "SKIP: vigil-h1 boots systemd: needs /lib/systemd/systemd and a cgroup2 hierarchy"; exit 77; }
W=$(mktemp -d /tmp/vigil-ansible.XXXXXX)
FLEET_LOGS=${VIGIL_ANSIBLE_TEST_LOGS:-}  # a folder: the playbooks' logs are kept there
trap fleet_cleanup EXIT
fleet_init vg 10.213 3
started=$(date +%s.%N)
elapsed() { echo "$(date +%s.%N) - $started" | bc; }

fleet_packages "$BUILD"
echo "packages built: $(elapsed) s"
fleet_keys
fleet_boot
{
  fleet_inventory
  cat <<INV
    vigil_agents:
      vars:
        vigil_agent_labels: {env: test}
        vigil_agent_actions:
          clean_old_logs: {dirs: [/var/log], min_age: 2h}
      hosts:
        vigil-h1: {ansible_host: $NET.11$(fleet_h1_vars)}
        vigil-h2: {ansible_host: $NET.12, vigil_agent_labels: {env: test, role: web}}
        vigil-h3:
          ansible_host: $NET.13
          vigil_agent_collectors: {host: {}, nginx: {access_log: /var/log/nginx/access.log}}
INV
} >"$W/inventory.yml"
fleet_ansible_env
fleet_wait_ssh
echo "hosts up: $(elapsed) s"

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
echo "an agent that did not reconnect stopped the rollout: $(elapsed) s"

# 6. The agents moved to a port of their own (vigil_controller_agent_port): the controller first,
# then serving both ports, then each agent dialing the new one (vigil-h1's, left on a closed port
# by 5, comes back). The CLI and the health check stay on 7443; the agents' queue is short.
play agent-port.log -e vigil_version=$V2 -e vigil_controller_agent_port=7444 \
  -e vigil_controller_address=$NET.11:7444 ||
  { tail -40 "$W/agent-port.log" >&2; fail "moving the agents to port 7444 failed"; }
on vigil-h1 grep -qx "agent_listen: 0.0.0.0:7444" /etc/vigil/controller.yaml ||
  fail "controller.yaml has no agent_listen: $(on vigil-h1 grep agent_listen /etc/vigil/controller.yaml)"
for h in "${HOSTS[@]}"; do
  on "$h" grep -q "controller: $NET.11:7444" /etc/vigil/agent.yaml || fail "$h does not dial port 7444"
done
[ "$(connected)" = "vigil-h1 vigil-h2 vigil-h3" ] || fail "on port 7444: '$(connected)'"
# Each agent's stream on the agents' port (ss lists the controller's side: local port 7444).
on_7444=$(on vigil-h1 ss -Htn state established '( sport = :7444 )' | wc -l)
[ "$on_7444" -ge 3 ] || fail "$on_7444 connections on port 7444, want the 3 agents'"
# A listener's Send-Q is its accept queue's length: 64 on the agents' port, the system's on 7443.
queue() { on vigil-h1 ss -Hltn "( sport = :$1 )" | awk '{print $3}' | sort -u | head -1; }
[ "$(queue 7444)" = 64 ] || fail "port 7444's accept queue is $(queue 7444), want 64"
[ "$(queue 7443)" != 64 ] || fail "port 7443's accept queue was shortened too"
echo "PASS: $(elapsed) s"
