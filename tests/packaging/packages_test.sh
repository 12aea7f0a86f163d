#!/usr/bin/env bash
# The Debian packages, as a fleet installs them: CPack builds vigil-agent, vigil-controller and
# vigil from this build; each holds what DESIGN.md's layout says (binaries in /usr/bin, config
# as conffiles under /etc/vigil, a systemd unit), depends on the libraries it links, passes
# lintian (apart from the documented overrides in packaging/debian) and its unit passes
# `systemd-analyze verify` with the packaged binaries in place (an overlay on /usr/bin in a
# mount namespace of this test's own, so the host is untouched).
#   VIGIL_PORTABLE_AGENT=0|1 VIGIL_JEMALLOC=0|1 tests/packaging/packages_test.sh BUILD_DIR
# (ctest passes the build's own settings: sanitized builds turn both off, whatever the cache says)
set -euo pipefail
BUILD=$(cd "$1" && pwd)
PORTABLE_AGENT=${VIGIL_PORTABLE_AGENT:?the build setting VIGIL_PORTABLE_AGENT, 0 or 1 (ctest sets it)}
JEMALLOC=${VIGIL_JEMALLOC:?the build setting VIGIL_JEMALLOC, 0 or 1 (ctest sets it)}
W=$(mktemp -d /tmp/vigil-packages.XXXXXX)
trap 'rm -rf "$W"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

(cd "$BUILD" && cpack -G DEB -B "$W/out" >"$W/cpack.log" 2>&1) || {
  cat "$W/cpack.log" >&2
  echo "FAIL: cpack could not build the packages" >&2
  exit 1
}
declare -A deb
for p in vigil-agent vigil-controller vigil; do
  deb[$p]=$(ls "$W"/out/${p}_*_amd64.deb 2>/dev/null | head -1)
  [ -n "${deb[$p]}" ] || { fail "no $p .deb in $W/out"; continue; }
done
[ "$failures" = 0 ] || exit 1

# Contents: each package's own files, nothing of the others'.
expect_file() {  # PACKAGE PATH
  dpkg-deb -c "${deb[$1]}" | awk '{print $NF}' | grep -qx "./$2" || fail "$1 lacks /$2"
}
expect_file vigil-agent usr/bin/vigil-agent
expect_file vigil-agent usr/lib/systemd/system/vigil-agent.service
expect_file vigil-agent etc/vigil/agent.yaml
expect_file vigil-controller usr/bin/vigil-controller
expect_file vigil-controller usr/lib/systemd/system/vigil-controller.service
expect_file vigil-controller etc/vigil/controller.yaml
expect_file vigil usr/bin/vigil
if dpkg-deb -c "${deb[vigil]}" | grep -q -e vigil-agent -e vigil-controller; then
  fail "the CLI's package carries a daemon's files"
fi
# Configs are conffiles: an upgrade never overwrites what the operator wrote.
[ "$(dpkg-deb -f "${deb[vigil-agent]}" Package)" = vigil-agent ] || fail "vigil-agent's name"
dpkg-deb --ctrl-tarfile "${deb[vigil-agent]}" | tar -xO ./conffiles | grep -qx /etc/vigil/agent.yaml ||
  fail "/etc/vigil/agent.yaml is not a conffile"
dpkg-deb --ctrl-tarfile "${deb[vigil-controller]}" | tar -xO ./conffiles |
  grep -qx /etc/vigil/controller.yaml || fail "/etc/vigil/controller.yaml is not a conffile"
# Dependencies come from the binaries' own libraries (dpkg-shlibdeps), not from a list by hand.
for p in vigil-agent vigil-controller vigil; do
  [[ "$(dpkg-deb -f "${deb[$p]}" Depends)" == *"libc6 "* ]] || fail "$p does not depend on libc6"
done
# The portable agent (VIGIL_PORTABLE_AGENT) needs glibc alone (and libpq, when it is linked
# shared): everything else is in it.
agent_depends=$(dpkg-deb -f "${deb[vigil-agent]}" Depends)
if [ "$PORTABLE_AGENT" = 1 ]; then
  in_binary="libgrpc libprotobuf libabsl libssl libyaml-cpp libhiredis libpqxx libstdc++6"
  if grep -q '^VIGIL_PORTABLE_LIBPQ_MODE:STRING=shared' "$BUILD/CMakeCache.txt"; then
    [[ "$agent_depends" == *libpq5* ]] || fail "vigil-agent does not depend on libpq5: $agent_depends"
  else
    in_binary+=" libpq5 libkrb5 libgssapi libldap libgnutls"
  fi
  for lib in $in_binary; do
    [[ "$agent_depends" != *"$lib"* ]] || fail "the portable vigil-agent depends on $lib: $agent_depends"
  done
fi
[[ "$(dpkg-deb -f "${deb[vigil-controller]}" Depends)" == *libsqlite3-0* ]] ||
  fail "vigil-controller does not depend on libsqlite3-0"
[[ "$(dpkg-deb -f "${deb[vigil-controller]}" Depends)" == *adduser* ]] ||
  fail "vigil-controller does not depend on adduser (its postinst makes the vigil user)"
# The controller's allocator (VIGIL_JEMALLOC, which sanitized builds turn off): linked, and a
# dependency of its package, or the package would not start where libjemalloc2 is missing.
if [ "$JEMALLOC" = 1 ]; then
  readelf -d "$BUILD/controller/vigil-controller" | grep -q 'NEEDED.*libjemalloc' ||
    fail "vigil-controller is not linked with jemalloc"
  [[ "$(dpkg-deb -f "${deb[vigil-controller]}" Depends)" == *libjemalloc2* ]] ||
    fail "vigil-controller does not depend on libjemalloc2"
fi

# lintian: every error and warning, apart from the overrides the packages ship.
if command -v lintian >/dev/null; then
  lintian --tag-display-limit 0 "${deb[@]}" >"$W/lintian.log" 2>&1 || true
  if grep -E '^[EW]: ' "$W/lintian.log"; then
    fail "lintian reports the lines above"
  fi
else
  fail "lintian is not installed (scripts/install-deps.sh installs it)"
fi

# systemd-analyze verify checks the units' syntax, their sandboxing options and that ExecStart's
# binary exists: the packaged binaries go over /usr/bin in a private mount namespace.
mkdir "$W/root"
for p in "${!deb[@]}"; do dpkg-deb -x "${deb[$p]}" "$W/root"; done
units=("$W"/root/usr/lib/systemd/system/vigil-agent.service
  "$W"/root/usr/lib/systemd/system/vigil-controller.service)
if unshare -m true 2>/dev/null; then
  if ! unshare -m sh -c "mount -t overlay overlay -o lowerdir=$W/root/usr/bin:/usr/bin /usr/bin &&
      systemd-analyze verify ${units[*]}" >"$W/verify.log" 2>&1; then
    cat "$W/verify.log" >&2
    fail "systemd-analyze verify refuses a unit"
  elif [ -s "$W/verify.log" ]; then
    cat "$W/verify.log" >&2
    fail "systemd-analyze verify warns about a unit"
  fi
  unshare -m sh -c "mount -t overlay overlay -o lowerdir=$W/root/usr/bin:/usr/bin /usr/bin &&
    systemd-analyze security --offline=true ${units[*]}" 2>/dev/null |
    grep 'Overall exposure' || true
else
  fail "cannot make a mount namespace (unshare -m) to verify the units: run as root"
fi
# The binaries in the packages run (stripped, with the libraries their Depends name).
for b in vigil-agent vigil-controller vigil; do
  "$W/root/usr/bin/$b" --version >/dev/null || fail "/usr/bin/$b from its package does not run"
done

if [ "$failures" != 0 ]; then
  echo "packages_test: $failures failure(s)" >&2
  exit 1
fi
echo "packages_test: vigil-agent, vigil-controller and vigil build, install their layout, pass lintian and systemd-analyze verify"
