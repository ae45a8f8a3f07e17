#!/usr/bin/env bash
# An AXE call end to end against a running privnum (`cargo run --release -- serve` in another
# terminal, with the demo privnum.toml): bind a courier behind an extension, let a caller key it
# with `privnum call --digits`, have the courier call back, then unbind.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${BASE:-http://127.0.0.1:8080}
API="$BASE/rest/caas/extendnumber/v1.0"
X=+8617300000101
cargo build --release --quiet
privnum=target/release/privnum

signed_curl() { curl -sS -K <("$privnum" sign --app demo-axe --format curl) "$@"; echo; }

echo "# bind the courier A on X; privnum assigns the extension"
answer=$(signed_curl -H 'Content-Type: application/json' \
  -d "{\"bindNum\":\"+8613800000001\",\"virtualNum\":\"$X\",\"callbackExpiredTime\":24,\"userData\":\"courier-7\"}" "$API")
echo "$answer"
id=$(sed -E 's/.*"subscriptionId":"([^"]+)".*/\1/' <<<"$answer")
ext=$(sed -E 's/.*"extendNum":"([^"]+)".*/\1/' <<<"$answer")

echo "# a customer dials X and keys \$ext (the prompt, ext.wav, is in the answer once it is an approved"
echo "# tone of demo-axe: README, Tones)"
"$privnum" call --server "$BASE" --from +8613700000009 --to "$X" --digits "$ext" --answer-after 3 --talk 20

echo "# the courier dials X: back to the customer"
"$privnum" call --server "$BASE" --from +8613800000001 --to "$X" --answer-after 2 --talk 10

echo "# the bindings on X, then unbind"
signed_curl "$API?virtualNum=%2B${X#+}"
signed_curl -X DELETE "$API?subscriptionId=$id"
