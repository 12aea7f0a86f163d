#!/usr/bin/env bash
# The packaged systemd units under a real systemd: this machine's systemd (PID 1 of a PID, mount,
# UTS, network and cgroup namespace of this test's own, booted over an overlay of this machine's
# / with a private upper layer, its own cgroup2 tree, /run and /tmp, and only loopback) gets
# the three .debs this build makes, installed with dpkg (their postinst scripts run against it),
# and the test checks with systemctl and real processes:
#   - a first install enables the units (as Debian's own packages do) and starts neither (they
#     need their TLS files and settings first);
#   - Type=notify: systemd waits for the controller's READY=1 (with notifications refused by a
#     drop-in, the start times out), and `systemctl start` returns with the ports already open;
#   - the sandbox the unit sets is the one the controller runs in (user vigil, no capabilities);
#   - the agent unit starts, connects to the controller over mutual TLS (certificates from
#     scripts/dev-ca.sh) and, inside its sandbox, runs a typed action: restart_service of a unit
#     of this systemd (proposed, approved, signed, run with `systemctl restart`);
#   - ExecReload: `systemctl reload` with a valid config reloads (the controller counts it, the
#     agent rereads its certificates) and with a broken config fails, the same process still
#     running with the config it had;
#   - Restart=on-failure: after `kill -9` of its main process the controller comes back with a
#     new one, and the agent reconnects to it;
#   - `systemctl stop` ends both cleanly (SIGTERM handled, exit status 0, no process left).
#   tests/packaging/systemd_units_test.sh BUILD_DIR   (root; exit 77: systemd cannot boot here)
set -euo pipefail
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (namespaces, mounts, cgroups)"
# The units' sandbox is for the release binaries the packages ship: under it a sanitizer build's
# controller spent 25 s of CPU before its first line and missed its start timeout (which setting
# AddressSanitizer's runtime trips on was not pinned down; LockPersonality and
# MemoryDenyWriteExecute are the usual suspects).
if grep -q '^VIGIL_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
  skip "$BUILD is a sanitizer build: the packaged units' sandbox is for release builds"
fi
[ -x /lib/systemd/systemd ] || skip "systemd is not installed (/lib/systemd/systemd)"
for tool in unshare nsenter script cpack dpkg-deb curl; do
  command -v "$tool" >/dev/null || skip "$tool is not installed"
done
# A cgroup2 tree for the booted systemd: this machine's unified hierarchy, wherever it is mounted
# (/sys/fs/cgroup on a cgroup2 machine, /sys/fs/cgroup/unified beside cgroup v1).
CG2=
for d in /sys/fs/cgroup /sys/fs/cgroup/unified; do
  [ "$(stat -fc %T "$d" 2>/dev/null)" = cgroup2fs ] && { CG2=$d; break; }
done
[ -n "$CG2" ] || skip "no cgroup2 hierarchy mounted (looked at /sys/fs/cgroup and /sys/fs/cgroup/unified)"
unshare -C -m -p -u -n --fork true 2>/dev/null ||
  skip "cannot make cgroup, mount, PID, UTS and network namespaces (unshare)"

W=$(mktemp -d /tmp/vigil-systemd.XXXXXX)
CG=$CG2/vigil-systemd-test-$$
BOOT_PID=
cleanup() {
  set +e
  # unshare --fork --kill-child: SIGKILL takes systemd, the PID namespace and all in it.
  [ -n "$BOOT_PID" ] && kill -9 "$BOOT_PID" 2>/dev/null && wait "$BOOT_PID" 2>/dev/null
  umount -l "$W/root" 2>/dev/null
  # The cgroups the booted systemd made, deepest first (they empty as its processes die).
  for _ in $(seq 50); do
    [ -d "$CG" ] || break
    find "$CG" -depth -type d -exec rmdir {} + 2>/dev/null
    sleep 0.1
  done
  rm -rf "$W"
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
started=$(date +%s.%N)
elapsed() { printf '%.1f' "$(echo "$(date +%s.%N) - $started" | bc)"; }

# The packages of this build.
(cd "$BUILD" && cpack -G DEB -B "$W/out" >"$W/cpack.log" 2>&1) || {
  cat "$W/cpack.log" >&2
  echo "FAIL: cpack could not build the packages" >&2
  exit 1
}
S=$W/share  # seen read-only in the booted system as /srv/vigil-test
mkdir -p "$S"
for p in vigil-agent vigil-controller vigil; do
  f=$(ls "$W"/out/${p}_*_amd64.deb 2>/dev/null | head -1)
  [ -n "$f" ] || { echo "FAIL: no $p .deb in $W/out" >&2; exit 1; }
  cp "$f" "$S/"
done
echo "packages built: $(elapsed) s"
"$SRC/scripts/dev-ca.sh" "$S/tls" --agent vigil-sd --user alice --user bob >/dev/null

# The booted system (boot_systemd.sh): this machine's systemd over an overlay of its /, with
# only loopback; its console is this test's pseudo-terminal, read into console.log.
R=$W/root
mkdir -p "$R"
mount -t tmpfs -o size=1g,mode=0755 tmpfs-vigil-systemd "$R"
mkdir -p "$R"/{upper,work,merged} "$R/upper/etc"
echo vigil-sd >"$R/upper/etc/hostname"
mkdir "$CG"
# In the cgroup first, then the namespaces: the cgroup namespace's root is that cgroup. script
# gives systemd a terminal for its console.
(
  echo "$BASHPID" >"$CG/cgroup.procs"
  exec script -qfec "unshare -C -m -p -u -n --fork --kill-child --propagation private \
    sh $SRC/tests/packaging/boot_systemd.sh $R $S" \
    "$W/console.log" </dev/null >/dev/null 2>&1
) &
BOOT_PID=$!
console_tail() { tr -d '\r' <"$W/console.log" | tail -n "${1:-25}" | sed 's/^/  console: /' >&2; }
SD=
for _ in $(seq 100); do
  u=$(pgrep -P "$BOOT_PID" -x unshare || true)
  [ -n "$u" ] && SD=$(pgrep -P "$u" -x systemd || true)
  [ -n "$SD" ] && break
  kill -0 "$BOOT_PID" 2>/dev/null || break
  sleep 0.1
done
[ -n "$SD" ] || { console_tail; skip "systemd did not start as PID 1 of the namespaces (console above)"; }
in_sd() { nsenter -t "$SD" -a -r -w "$@"; }  # a command in the booted system
state=
for _ in $(seq 300); do
  state=$(in_sd systemctl is-system-running 2>/dev/null || true)
  case $state in running | degraded) break ;; esac
  kill -0 "$SD" 2>/dev/null || break
  sleep 0.1
done
case $state in
  running) ;;
  degraded) in_sd systemctl --failed --no-legend --plain | sed 's/^/  failed unit (not ours): /' ;;
  *)
    console_tail
    skip "systemd did not finish booting in 30 s (state '${state:-none}', console above)"
    ;;
esac
echo "systemd $(in_sd systemctl --version | awk 'NR==1 {print $2}') booted ($state): $(elapsed) s"

# Everything below asks the booted systemd.
show() { in_sd systemctl show -p "$2" --value "$1"; }  # UNIT PROPERTY
main_pid() { show "$1" MainPID; }
journal() { in_sd journalctl --no-pager -o cat "$@"; }
cursor() { in_sd journalctl -n 0 --show-cursor | sed -n 's/^-- cursor: //p'; }
wait_for() {  # SECONDS COMMAND...: until COMMAND succeeds
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

in_sd sh -c 'dpkg -i /srv/vigil-test/*.deb' >"$W/dpkg.log" 2>&1 || {
  cat "$W/dpkg.log" >&2
  echo "FAIL: dpkg -i refused the packages" >&2
  exit 1
}
for u in vigil-controller vigil-agent; do
  [ "$(show $u.service LoadState)" = loaded ] || fail "$u.service is not loaded after dpkg -i"
  [ "$(in_sd systemctl is-enabled $u.service 2>&1)" = enabled ] ||
    fail "a first install left $u.service $(in_sd systemctl is-enabled $u.service 2>&1), not enabled"
  [ "$(show $u.service ActiveState)" = inactive ] || fail "a first install started $u.service"
done

# The controller's TLS files (key readable by the group vigil) and settings on loopback.
in_sd sh -ec '
  install -d -m 0755 /etc/vigil/tls
  install -m 0644 /srv/vigil-test/tls/ca.pem /srv/vigil-test/tls/controller.pem /etc/vigil/tls/
  install -m 0640 -g vigil /srv/vigil-test/tls/controller.key /etc/vigil/tls/
  install -m 0644 /srv/vigil-test/tls/agent-vigil-sd.pem /etc/vigil/tls/agent.pem
  install -m 0600 /srv/vigil-test/tls/agent-vigil-sd.key /etc/vigil/tls/agent.key
  for u in alice bob; do
    install -m 0644 /srv/vigil-test/tls/user-$u.pem /etc/vigil/tls/
    install -m 0600 /srv/vigil-test/tls/user-$u.key /etc/vigil/tls/
  done
  cat >/etc/vigil/controller.yaml <<EOF
listen: 127.0.0.1:7443
db: /var/lib/vigil/vigil.db
tls_ca: /etc/vigil/tls/ca.pem
tls_cert: /etc/vigil/tls/controller.pem
tls_key: /etc/vigil/tls/controller.key
http_listen: 127.0.0.1:9464
EOF
  cp /etc/vigil/controller.yaml /etc/vigil/controller.yaml.good'

# 1. Type=notify. Without $NOTIFY_SOCKET (a drop-in unsets it, and keeps systemd from restarting
# the unit) the controller says nothing: systemd holds it "activating" although it listens, and
# the start fails by its timeout. With it, the start returns only once the controller said
# READY=1, which it says after its ports are open.
in_sd sh -ec 'mkdir -p /run/systemd/system/vigil-controller.service.d
  printf "[Service]\nUnsetEnvironment=NOTIFY_SOCKET\nTimeoutStartSec=5s\nRestart=no\n" \
    >/run/systemd/system/vigil-controller.service.d/no-notify.conf
  systemctl daemon-reload'
c0=$(cursor)
in_sd systemctl start --no-block vigil-controller.service
listening_logged() { journal -u vigil-controller.service --after-cursor="$c0" | grep -q 'listening on'; }
if wait_for 5 listening_logged; then
  [ "$(show vigil-controller.service ActiveState)" = activating ] ||
    fail "vigil-controller is $(show vigil-controller.service ActiveState) without READY=1, not activating"
else
  fail "vigil-controller did not start listening (without \$NOTIFY_SOCKET)"
fi
timed_out() { [ "$(show vigil-controller.service Result)" = timeout ]; }
wait_for 10 timed_out ||
  fail "without READY=1 the start ended '$(show vigil-controller.service Result)' ($(show vigil-controller.service ActiveState)), not by its timeout"
in_sd sh -ec 'rm -r /run/systemd/system/vigil-controller.service.d
  systemctl daemon-reload; systemctl reset-failed vigil-controller.service'
c0=$(cursor)
t0=$(date +%s.%N)
in_sd systemctl start vigil-controller.service || {
  journal -u vigil-controller.service | tail -20 >&2
  fail "systemctl start vigil-controller failed"
}
echo "vigil-controller started in $(echo "$(date +%s.%N) - $t0" | bc) s"
[ "$(show vigil-controller.service ActiveState)" = active ] || fail "vigil-controller is not active"
# At once, no waiting: the gRPC and HTTP ports are open when `systemctl start` returns.
listening=$(in_sd ss -Hltn 'sport = :7443 or sport = :9464' | wc -l)
[ "$listening" = 2 ] || fail "systemctl start returned with $listening of vigil-controller's 2 ports open"
# The journal tells the same order: the controller's "listening on" line, then systemd's "Started".
journal --after-cursor="$c0" | grep -n -e 'listening on 127.0.0.1:7443' -e '^Started vigil-controller' \
  >"$W/order" || true
grep -q 'listening on' "$W/order" && grep -q Started "$W/order" &&
  [ "$(head -1 "$W/order" | grep -c 'listening on')" = 1 ] ||
  fail "the journal does not show 'listening on' before 'Started': $(cat "$W/order")"
CPID=$(main_pid vigil-controller.service)
[ "$CPID" -gt 0 ] 2>/dev/null || fail "vigil-controller has no main PID"
# The sandbox the unit asks for: user vigil, no capabilities at all, no new privileges.
status=$(in_sd cat "/proc/$CPID/status" 2>/dev/null || true)
[ "$(in_sd ps -o user= -p "$CPID")" = vigil ] || fail "vigil-controller does not run as vigil"
grep -q '^CapBnd:[[:space:]]*0000000000000000$' <<<"$status" ||
  fail "vigil-controller keeps capabilities: $(grep ^CapBnd <<<"$status")"
grep -q '^NoNewPrivs:[[:space:]]*1$' <<<"$status" || fail "vigil-controller may gain privileges"
grep -q '^Seccomp:[[:space:]]*2$' <<<"$status" || fail "vigil-controller runs without its system call filter"
# ... which lets the ingest thread run its 5 nice levels below the others (--ingest-nice).
main_nice=$(in_sd ps -o ni= -p "$CPID" | tr -d ' ' || true)
ingest_nice=$(in_sd ps -L -o comm=,ni= -p "$CPID" | awk '$1 == "vigil-ingest" {print $2}' || true)
[ -n "$main_nice" ] && [ "$ingest_nice" = "$((main_nice + 5))" ] ||
  fail "vigil-controller's ingest thread runs at nice '$ingest_nice', not 5 below its main thread's '$main_nice'"
# LimitNOFILE=65536, or as near as this machine lets root go (the booted systemd keeps the hard
# limit this test has: without CAP_SYS_RESOURCE it cannot raise it).
hard=$(ulimit -Hn)
want=65536
[ "$hard" != unlimited ] && [ "$hard" -lt 65536 ] && want=$hard
nofile=$(in_sd cat "/proc/$CPID/limits" | awk '/^Max open files/ {print $4}')
[ "$nofile" = "$want" ] || fail "vigil-controller may open $nofile files, not $want (LimitNOFILE)"
[ "$want" = 65536 ] ||
  echo "note: this machine's hard limit on open files is $want: LimitNOFILE=65536 gets that"

# People: two commanders (one proposes, the other approves).
token() { in_sd runuser -u vigil -- vigil-controller users add "$1" --role commander \
  --db /var/lib/vigil/vigil.db 2>>"$W/users.log" | grep -o 'vgt_[0-9a-f]*'; }
ALICE=$(token alice) BOB=$(token bob)
[ -n "$ALICE" ] && [ -n "$BOB" ] || fail "vigil-controller users add printed no token"
cli() {  # USER ARGS...: the CLI over mutual TLS, as USER
  local user=$1 tok
  shift
  tok=$ALICE
  [ "$user" = bob ] && tok=$BOB
  in_sd env VIGIL_TOKEN="$tok" vigil --controller 127.0.0.1:7443 --tls-ca /etc/vigil/tls/ca.pem \
    --tls-cert "/etc/vigil/tls/user-$user.pem" --tls-key "/etc/vigil/tls/user-$user.key" "$@"
}
agent_connected() {  # the controller lists vigil-sd as connected
  cli alice agents -o json | python3 -c 'import json,sys
sys.exit(0 if any(a["agent_id"] == "vigil-sd" and a["state"] == "CONNECTED"
                  for a in json.load(sys.stdin).get("agents", [])) else 1)'
}

# 2. The agent: its settings, the controller's public signing key, and a unit its typed action
# restarts (restart_service runs `systemctl restart` from inside the agent's sandbox).
in_sd sh -ec '
  cp /var/lib/vigil/controller-signing.pub /etc/vigil/controller-signing.pub
  cat >/etc/vigil/agent.yaml <<EOF
id: vigil-sd
controller: 127.0.0.1:7443
tls: {ca: /etc/vigil/tls/ca.pem, cert: /etc/vigil/tls/agent.pem, key: /etc/vigil/tls/agent.key}
collectors:
  host: {}
actions:
  restart_service: {units: [vigil-probe.service]}
controller_public_key: /etc/vigil/controller-signing.pub
EOF
  cp /etc/vigil/agent.yaml /etc/vigil/agent.yaml.good
  printf "[Service]\nExecStart=/bin/sleep infinity\n" >/etc/systemd/system/vigil-probe.service
  systemctl daemon-reload
  systemctl start vigil-probe.service'
in_sd systemctl start vigil-agent.service || {
  journal -u vigil-agent.service | tail -20 >&2
  fail "systemctl start vigil-agent failed"
}
APID=$(main_pid vigil-agent.service)
[ "$(show vigil-agent.service ActiveState)" = active ] || fail "vigil-agent is not active"
wait_for 20 agent_connected || {
  journal -u vigil-agent.service | tail -20 >&2
  fail "vigil-agent did not connect to the controller over mutual TLS in 20 s"
}
echo "vigil-agent connected: $(elapsed) s"

# The typed action: an incident (an Alertmanager alert about this host), a proposal by alice,
# bob's approval; the agent restarts vigil-probe.service through systemd.
probe_before=$(main_pid vigil-probe.service)
in_sd curl -sf -H "Authorization: Bearer $ALICE" -H 'Content-Type: application/json' \
  http://127.0.0.1:9464/api/v1/alertmanager -d '{"version":"4","status":"firing","alerts":[
  {"status":"firing","labels":{"alertname":"ProbeDown","severity":"critical",
  "instance":"vigil-sd:9100","service":"probe"},"annotations":{"summary":"probe is down"},
  "startsAt":"2026-12-01T09:00:00Z"}]}' >/dev/null || fail "the Alertmanager webhook refused the alert"
incident=
incident_id() {
  incident=$(cli alice incidents --state=all -o json | python3 -c 'import json,sys
print(min((i["id"] for i in json.load(sys.stdin).get("incidents", [])), default=""))')
  [ -n "$incident" ]
}
wait_for 10 incident_id || fail "no incident from the alert"
proposal=$(cli alice action propose "$incident" --agent vigil-sd --action restart_service \
  --param unit=vigil-probe.service --reason "the probe is stuck" -o json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])') || fail "the proposal failed"
cli bob action approve "$proposal" >/dev/null || fail "bob's approval failed"
action_state() {
  cli alice actions --incident "$incident" -o json | python3 -c 'import json,sys
print(next((a.get("state", "") for a in json.load(sys.stdin).get("actions", []) if a["id"] == sys.argv[1]), ""))' "$proposal"
}
action_done() { case $(action_state) in SUCCEEDED | FAILED | OUTCOME_UNKNOWN) return 0 ;; *) return 1 ;; esac; }
wait_for 20 action_done || true
astate=$(action_state)
probe_after=$(main_pid vigil-probe.service)
if [ "$astate" != SUCCEEDED ]; then
  cli alice actions --incident "$incident" -o json >&2 || true
  journal -u vigil-agent.service | tail -10 >&2
  fail "restart_service ended '$astate', not SUCCEEDED"
fi
[ "$probe_after" -gt 0 ] 2>/dev/null && [ "$probe_after" != "$probe_before" ] ||
  fail "vigil-probe.service was not restarted (main PID $probe_before, then $probe_after)"
journal -u vigil-probe.service | grep -q '^Stopped vigil-probe.service' ||
  fail "systemd did not record vigil-probe.service's restart"
echo "restart_service ran through systemd from the agent's sandbox: $(elapsed) s"

# 3. ExecReload. A valid config: --check-config passes, SIGHUP, the controller reloads (its
# counter says so) in the same process.
reloads_ok() {
  in_sd curl -sf http://127.0.0.1:9464/metrics | sed -n 's/^vigil_config_reloads_total{result="ok"} //p'
}
before=$(reloads_ok)
in_sd systemctl reload vigil-controller.service || fail "systemctl reload vigil-controller failed with a valid config"
[ "$(reloads_ok)" = $((before + 1)) ] ||
  fail "the controller did not count the reload (reloads ok: $before, then $(reloads_ok))"
[ "$(main_pid vigil-controller.service)" = "$CPID" ] || fail "the reload replaced vigil-controller's process"
# A broken config: the reload fails at --check-config, the same process keeps running unreloaded.
in_sd sh -c 'echo "no_such_setting: 1" >>/etc/vigil/controller.yaml'
before=$(reloads_ok)
if in_sd systemctl reload vigil-controller.service 2>/dev/null; then
  fail "systemctl reload vigil-controller succeeded with a broken config"
fi
# journald stores the refused check's lines a moment after systemctl returns: on a busy machine
# (the test run's other tests beside it) they were not there yet once in 4 runs.
reload_refusal_logged() { journal -u vigil-controller.service | grep -q 'no_such_setting'; }
wait_for 10 reload_refusal_logged ||
  fail "the failed reload does not say what is wrong with the config"
[ "$(show vigil-controller.service ActiveState)" = active ] || fail "a failed reload left vigil-controller $(show vigil-controller.service ActiveState)"
[ "$(main_pid vigil-controller.service)" = "$CPID" ] || fail "a failed reload replaced vigil-controller's process"
[ "$(reloads_ok)" = "$before" ] || fail "the controller reloaded a config that failed its check"
in_sd cp /etc/vigil/controller.yaml.good /etc/vigil/controller.yaml
# The agent's: a valid reload rereads its certificates and keeps its process; a broken one fails.
c1=$(cursor)
in_sd systemctl reload vigil-agent.service || fail "systemctl reload vigil-agent failed with a valid config"
journal -u vigil-agent.service --after-cursor="$c1" | grep -q 'SIGHUP: reloaded' ||
  fail "vigil-agent did not reload its certificates on systemctl reload"
in_sd sh -c 'echo "no_such_setting: 1" >>/etc/vigil/agent.yaml'
if in_sd systemctl reload vigil-agent.service 2>/dev/null; then
  fail "systemctl reload vigil-agent succeeded with a broken config"
fi
[ "$(main_pid vigil-agent.service)" = "$APID" ] || fail "a reload replaced vigil-agent's process"
in_sd systemctl is-active --quiet vigil-agent.service || fail "a failed reload stopped vigil-agent"
in_sd cp /etc/vigil/agent.yaml.good /etc/vigil/agent.yaml
echo "reloads checked: $(elapsed) s"

# 4. Restart=on-failure: kill -9, and systemd starts a new controller (after RestartSec=2s); the
# agent reconnects to it.
restarts=$(show vigil-controller.service NRestarts)
in_sd kill -9 "$CPID"
new_pid() {
  local p
  p=$(main_pid vigil-controller.service)
  [ "$p" -gt 0 ] && [ "$p" != "$CPID" ] && in_sd systemctl is-active --quiet vigil-controller.service
}
wait_for 20 new_pid || fail "vigil-controller did not come back after kill -9 (state $(show vigil-controller.service ActiveState))"
[ "$(show vigil-controller.service NRestarts)" = $((restarts + 1)) ] ||
  fail "systemd counts $(show vigil-controller.service NRestarts) restarts, not $((restarts + 1))"
in_sd kill -0 "$CPID" 2>/dev/null && fail "the killed controller $CPID still exists"
CPID=$(main_pid vigil-controller.service)
wait_for 30 agent_connected || fail "vigil-agent did not reconnect to the restarted controller in 30 s"
echo "restarted after kill -9, agent reconnected: $(elapsed) s"

# 5. systemctl stop: SIGTERM, a clean exit (status 0, not killed after TimeoutStopSec), nothing left.
c5=$(cursor)
for u in vigil-agent vigil-controller; do
  pid=$(main_pid $u.service)
  t0=$SECONDS
  in_sd systemctl stop $u.service || fail "systemctl stop $u failed"
  [ $((SECONDS - t0)) -lt 15 ] || fail "$u took $((SECONDS - t0)) s to stop"
  [ "$(show $u.service ActiveState)" = inactive ] || fail "$u is $(show $u.service ActiveState) after stop"
  [ "$(show $u.service Result)" = success ] || fail "$u stopped with result $(show $u.service Result)"
  [ "$(show $u.service ExecMainCode)" = 1 ] && [ "$(show $u.service ExecMainStatus)" = 0 ] ||
    fail "$u did not exit 0 on SIGTERM (code $(show $u.service ExecMainCode), status $(show $u.service ExecMainStatus))"
  [ "$pid" -gt 0 ] && in_sd kill -0 "$pid" 2>/dev/null && fail "$u's process $pid is still there after stop"
  left=$(in_sd sh -c "cat /sys/fs/cgroup/system.slice/$u.service/cgroup.procs 2>/dev/null || true" | wc -l)
  [ "$left" = 0 ] || fail "$left process(es) left in $u's cgroup"
done
journal -u vigil-controller.service --after-cursor="$c5" | grep -q 'signal 15: stopping' ||
  fail "vigil-controller did not log its SIGTERM stop"

if [ "$failures" != 0 ]; then
  echo "systemd_units_test: $failures failure(s) ($(elapsed) s)" >&2
  exit 1
fi
echo "systemd_units_test: both units ran under systemd $(in_sd systemctl --version | awk 'NR==1 {print $2}'): notify, reload, restart, stop, an action ($(elapsed) s)"
