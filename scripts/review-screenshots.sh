#!/usr/bin/env bash
# Screenshots of the review page for the README: starts a throwaway controller over HTTPS (a
# development CA, a temporary database), posts a few Alertmanager alerts, acknowledges one
# incident with a note, signs a viewer in with headless Chromium through scripts/chromium_cdp.py
# and writes docs/review-list.png and docs/review-incident.png (1200x800).
#
#   scripts/review-screenshots.sh [OUT_DIR]      (default: docs/; needs a build, VIGIL_BUILD_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${VIGIL_BUILD_DIR:-build}
OUT=${1:-docs}
for tool in chromium /usr/bin/python3 "$BUILD/controller/vigil-controller" "$BUILD/cli/vigil"; do
  command -v "$tool" >/dev/null || { echo "review-screenshots: $tool is missing" >&2; exit 1; }
done
WORK=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { "$PWD/scripts/free-port"; }

scripts/dev-ca.sh "$WORK/tls" >/dev/null
DB=$WORK/vigil.db
viewer=$("$BUILD/controller/vigil-controller" users add auditor --role viewer --db="$DB" | grep -o 'vgt_[0-9a-f]*')
responder=$("$BUILD/controller/vigil-controller" users add alertmanager --role responder --db="$DB" | grep -o 'vgt_[0-9a-f]*')
GRPC=127.0.0.1:$(free_port)
HTTP_PORT=$(free_port)
BASE=https://127.0.0.1:$HTTP_PORT
"$BUILD/controller/vigil-controller" --listen="$GRPC" --db="$DB" --insecure \
  --http-listen="127.0.0.1:$HTTP_PORT" --http-tls-cert="$WORK/tls/controller.pem" \
  --http-tls-key="$WORK/tls/controller.key" --checkpoint-every=1s >"$WORK/controller.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -sf --cacert "$WORK/tls/ca.pem" "$BASE/review/login" >/dev/null && break
  sleep 0.1
done

alert() {  # NAME SEVERITY INSTANCE SERVICE SUMMARY
  curl -sf --cacert "$WORK/tls/ca.pem" -H "Authorization: Bearer $responder" \
    -H 'Content-Type: application/json' "$BASE/api/v1/alertmanager" -d "{\"version\":\"4\",
    \"status\":\"firing\",\"alerts\":[{\"status\":\"firing\",\"labels\":{\"alertname\":\"$1\",
    \"severity\":\"$2\",\"instance\":\"$3\",\"service\":\"$4\"},
    \"annotations\":{\"summary\":\"$5\"},\"startsAt\":\"2026-11-30T09:00:00Z\"}]}" >/dev/null
}
alert HighAPILatency critical web-1:9100 rag-api "API p95 latency above 2 s on web-1"
alert HighAPILatency critical web-2:9100 rag-api "API p95 latency above 2 s on web-2"
alert ReplicaLag warning db-2:9187 postgres "Replica db-2 is 45 s behind"
alert DiskSpaceWarning warning worker-3:9100 worker "Disk /var above 80 % on worker-3"
cli=("$BUILD/cli/vigil" --controller="$GRPC" --insecure --token="$responder")
for _ in $(seq 50); do
  first=$("${cli[@]}" incidents --state=all -o json | /usr/bin/python3 -c \
    'import json,sys; i=json.load(sys.stdin).get("incidents",[]); print(min((x["id"] for x in i if "latency" in x.get("title","").lower()), default=""))')
  [ -n "$first" ] && break
  sleep 0.1
done
"${cli[@]}" incident ack "$first" >/dev/null
"${cli[@]}" incident note "$first" "nginx upstream timeouts on web-1 and web-2; checking the database" >/dev/null
sleep 2  # the head is signed (--checkpoint-every=1s): the page shows the checkpoint it verifies

CDP=(/usr/bin/python3 "$ROOT/scripts/chromium_cdp.py")
"${CDP[@]}" launch "$WORK/chromium" >"$WORK/chromium.log" 2>&1 &
pids+=($!)
"${CDP[@]}" "$WORK/chromium" wait
"${CDP[@]}" "$WORK/chromium" open "$BASE/review/login" >/dev/null
"${CDP[@]}" "$WORK/chromium" act "document.getElementById('token').value='$viewer';document.querySelector('form.login').submit()" >/dev/null
"${CDP[@]}" "$WORK/chromium" open "$BASE/review?state=all" >/dev/null
mkdir -p "$OUT"
"${CDP[@]}" "$WORK/chromium" screenshot "$OUT/review-list.png"
"${CDP[@]}" "$WORK/chromium" open "$BASE/review/incident?id=$first" >/dev/null
"${CDP[@]}" "$WORK/chromium" screenshot "$OUT/review-incident.png"
echo "review-screenshots: wrote $OUT/review-list.png and $OUT/review-incident.png"
