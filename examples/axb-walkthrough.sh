#!/usr/bin/env bash
# Binds, queries, modifies and unbinds an AXB pair with curl against a running privnum
# (`cargo run --release -- serve` in another terminal, with the demo privnum.toml).
# Each request is signed with fresh AKSK headers from `privnum sign`.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${BASE:-http://127.0.0.1:8080}
API="$BASE/rest/caas/relationnumber/partners/v1.0"
cargo build --release --quiet
privnum=target/release/privnum

signed_curl() { curl -sS -K <("$privnum" sign --app demo-app --format curl) "$@"; echo; }

echo "# bind A and B on a free X in area code 0755"
answer=$(signed_curl -H 'Content-Type: application/json' \
  -d '{"areaCode":"0755","callerNum":"+8613800000001","calleeNum":"+8613900000002","duration":3600,"userData":"order-42"}' "$API")
echo "$answer"
id=$(sed -E 's/.*"subscriptionId":"([^"]+)".*/\1/' <<<"$answer")

echo "# query it"
signed_curl "$API?subscriptionId=$id"

echo "# give it a new B and restart its one-hour clock"
signed_curl -X PUT -H 'Content-Type: application/json' \
  -d "{\"subscriptionId\":\"$id\",\"calleeNum\":\"+8613900000003\",\"duration\":3600}" "$API"

echo "# unbind"
signed_curl -X DELETE "$API?subscriptionId=$id"
