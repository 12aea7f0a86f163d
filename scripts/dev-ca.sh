#!/usr/bin/env bash
# Makes a development certificate authority and the certificates for mutual TLS between
# vigil-controller, vigil-agent and the vigil CLI, so that a development setup is secure by default
# instead of relying on --insecure. For development and tests only: the CA key sits unencrypted
# next to the certificates.
#
#   scripts/dev-ca.sh OUT_DIR [--agent ID]... [--pod NAME]... [--user NAME]...
#                     [--controller-name DNS]...
#
# Writes into OUT_DIR:
#   ca.pem, ca.key                 the CA (kept when it already exists, so re-running is safe)
#   controller.pem, controller.key server certificate for localhost, 127.0.0.1, ::1, this host
#                                  and each --controller-name (e.g. its Kubernetes Service name)
#   agent-ID.pem, agent-ID.key     per agent: CN=ID and SAN DNS:ID, the identity the controller
#                                  checks against the agent's id
#   pod-NAME.pem, pod-NAME.key     per Kubernetes workload: SAN DNS:NAME.pods.vigil, which the
#                                  controller takes for the workload's pods NAME-SUFFIX
#   user-NAME.pem, user-NAME.key   per CLI user: CN=NAME (no DNS name), client authentication
# Keys are EC P-256 (supported by the gRPC TLS stack on Debian 12) and mode 0600. A certificate
# that exists, is signed by the CA, names what it should and is valid for another day is kept.
set -euo pipefail

PROG=$(basename "$0")
die() {
  echo "$PROG: $*" >&2
  exit 1
}
usage() {
  echo "usage: $PROG OUT_DIR [--agent ID]... [--pod NAME]... [--user NAME]..." \
    "[--controller-name DNS]..." >&2
  exit 2
}

OUT=""
AGENTS=()
USERS=()
PODS=()
CONTROLLER_NAMES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --agent) [ $# -ge 2 ] || usage; AGENTS+=("$2"); shift 2 ;;
    --agent=*) AGENTS+=("${1#--agent=}"); shift ;;
    --controller-name) [ $# -ge 2 ] || usage; CONTROLLER_NAMES+=("$2"); shift 2 ;;
    --controller-name=*) CONTROLLER_NAMES+=("${1#--controller-name=}"); shift ;;
    --pod) [ $# -ge 2 ] || usage; PODS+=("$2"); shift 2 ;;
    --pod=*) PODS+=("${1#--pod=}"); shift ;;
    --user) [ $# -ge 2 ] || usage; USERS+=("$2"); shift 2 ;;
    --user=*) USERS+=("${1#--user=}"); shift ;;
    -h | --help)
      sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    -*) echo "$PROG: unknown option '$1'" >&2; usage ;;
    *)
      [ -z "$OUT" ] || { echo "$PROG: more than one OUT_DIR ('$OUT', '$1')" >&2; usage; }
      OUT=$1
      shift
      ;;
  esac
done
[ -n "$OUT" ] || usage

command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"

# Names become file names, certificate subjects and DNS names: keep them to what all three accept.
check_name() {
  local kind=$1 name=$2
  if ! [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ ]]; then
    die "$kind '$name': use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"
  fi
}
for id in ${AGENTS[@]+"${AGENTS[@]}"}; do check_name "--agent" "$id"; done
for name in ${USERS[@]+"${USERS[@]}"}; do check_name "--user" "$name"; done
for name in ${CONTROLLER_NAMES[@]+"${CONTROLLER_NAMES[@]}"}; do
  check_name "--controller-name" "$name"
done
# A workload name is the first part of its pods' names: a lowercase DNS label.
for name in ${PODS[@]+"${PODS[@]}"}; do
  if ! [[ "$name" =~ ^[a-z0-9]([a-z0-9-]{0,51}[a-z0-9])?$ ]]; then
    die "--pod '$name': use 1 to 53 lowercase letters, digits or inner '-' (a Kubernetes workload name)"
  fi
done

mkdir -p "$OUT" || die "cannot create $OUT"
[ -w "$OUT" ] || die "$OUT is not writable"
WORK=$(mktemp -d) || die "cannot make a temporary directory"
trap 'rm -rf "$WORK"' EXIT
umask 077

# A config of our own, so that the result does not depend on the system's openssl.cnf.
cat >"$WORK/req.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF

run_openssl() {
  local log="$WORK/openssl.log"
  if ! openssl "$@" >"$log" 2>&1; then
    echo "$PROG: openssl $1 failed:" >&2
    sed 's/^/  /' "$log" >&2
    exit 1
  fi
}

new_key() {
  run_openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
  chmod 600 "$1"
}

# The CA: kept when present, so certificates already handed out stay valid.
if [ -f "$OUT/ca.pem" ] && [ -f "$OUT/ca.key" ]; then
  echo "kept    $OUT/ca.pem (existing CA)"
elif [ -f "$OUT/ca.pem" ] || [ -f "$OUT/ca.key" ]; then
  die "$OUT has only one of ca.pem and ca.key: restore the other, or remove both to make a new CA"
else
  new_key "$WORK/ca.key"
  run_openssl req -x509 -new -config "$WORK/req.cnf" -extensions ca_ext -key "$WORK/ca.key" \
    -subj "/O=Vigil development/CN=Vigil development CA" -days 3650 -sha256 -out "$WORK/ca.pem"
  chmod 644 "$WORK/ca.pem"
  mv "$WORK/ca.key" "$OUT/ca.key"
  mv "$WORK/ca.pem" "$OUT/ca.pem"
  echo "wrote   $OUT/ca.pem, $OUT/ca.key (new CA)"
fi

# True when NAME.pem/NAME.key exist, the certificate is signed by the CA, is valid for another
# day, and its subjectAltName lists every entry of $2 (comma separated, as openssl prints them).
still_good() {
  local base=$1 want_san=$2 have_san entry
  [ -f "$base.pem" ] && [ -f "$base.key" ] || return 1
  openssl verify -CAfile "$OUT/ca.pem" "$base.pem" >/dev/null 2>&1 || return 1
  openssl x509 -in "$base.pem" -noout -checkend 86400 >/dev/null 2>&1 || return 1
  have_san=$(openssl x509 -in "$base.pem" -noout -ext subjectAltName 2>/dev/null | tail -n +2 |
    tr -d ' ')
  IFS=',' read -ra entries <<<"$want_san"
  for entry in "${entries[@]}"; do
    [[ ",$have_san," == *",$entry,"* ]] || return 1
  done
  # The key must be the certificate's.
  [ "$(openssl x509 -in "$base.pem" -noout -pubkey 2>/dev/null)" == \
    "$(openssl pkey -in "$base.key" -pubout 2>/dev/null)" ]
}

# issue FILE_BASE SUBJECT EXTENDED_KEY_USAGE SAN [SAN_AS_PRINTED]; an empty SAN: none.
issue() {
  local base=$1 subject=$2 eku=$3 san=$4 printed=${5:-$4}
  if still_good "$OUT/$base" "$printed"; then
    echo "kept    $OUT/$base.pem (valid, signed by the CA)"
    return
  fi
  new_key "$WORK/$base.key"
  run_openssl req -new -config "$WORK/req.cnf" -key "$WORK/$base.key" -subj "$subject" \
    -out "$WORK/$base.csr"
  cat >"$WORK/$base.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = $eku
${san:+subjectAltName = $san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  run_openssl x509 -req -in "$WORK/$base.csr" -CA "$OUT/ca.pem" -CAkey "$OUT/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 825 -sha256 -extfile "$WORK/$base.ext" \
    -out "$WORK/$base.pem"
  chmod 644 "$WORK/$base.pem"
  mv "$WORK/$base.key" "$OUT/$base.key"
  mv "$WORK/$base.pem" "$OUT/$base.pem"
  echo "wrote   $OUT/$base.pem, $OUT/$base.key ($subject)"
}

HOST=$(hostname 2>/dev/null || true)
SAN="DNS:localhost,IP:127.0.0.1,IP:::1"
PRINTED="DNS:localhost,IPAddress:127.0.0.1,IPAddress:0:0:0:0:0:0:0:1"
if [ -n "$HOST" ] && [ "$HOST" != localhost ] && [[ "$HOST" =~ ^[A-Za-z0-9._-]+$ ]]; then
  SAN="$SAN,DNS:$HOST"
  PRINTED="$PRINTED,DNS:$HOST"
fi
for name in ${CONTROLLER_NAMES[@]+"${CONTROLLER_NAMES[@]}"}; do
  SAN="$SAN,DNS:$name"
  PRINTED="$PRINTED,DNS:$name"
done
issue controller "/O=Vigil development/CN=vigil-controller" serverAuth "$SAN" "$PRINTED"
for id in ${AGENTS[@]+"${AGENTS[@]}"}; do
  issue "agent-$id" "/O=Vigil development/CN=$id" clientAuth "DNS:$id"
done
for name in ${PODS[@]+"${PODS[@]}"}; do
  issue "pod-$name" "/O=Vigil development/CN=$name.pods.vigil" clientAuth "DNS:$name.pods.vigil"
done
for name in ${USERS[@]+"${USERS[@]}"}; do
  # No DNS name: a user is not a host, and the controller takes DNS names as agent identities.
  issue "user-$name" "/O=Vigil development/CN=$name" clientAuth ""
done
