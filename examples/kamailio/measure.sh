#!/usr/bin/env bash
# What asking privnum costs a real switch: SIPp calls through Kamailio + privnum, and through
# the same Kamailio config with a static route (-A WITH_STATIC_ROUTE), alternately in one run,
# at each rate for the same time. Prints failed calls and call setup latency (INVITE -> 180 at
# the caller, SIPp's response time) p50 / p99 for each.
#
#   examples/kamailio/measure.sh [RATES] [SECONDS]      # default: 50,100,200 20
#
# Needs what .ci/sip needs (kamailio, its json/utils/extra modules, sip-tester, python3, curl);
# uses target/release/privnum (built when missing). Ports 25160-25199 on 127.0.0.1. Each call
# talks 1 s, so about rate x 1.5 calls are up at once.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
K=$ROOT/examples/kamailio
RATES=${1:-50,100,200}
SECS=${2:-20}

if [ -n "${PRIVNUM_BIN:-}" ]; then
  P=$(realpath "$PRIVNUM_BIN")
else
  [ -x target/release/privnum ] || cargo build --release --quiet --bin privnum
  P=$ROOT/target/release/privnum
fi
W=$(mktemp -d /tmp/privnum-sip-measure.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${SIP_KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT

API=25190 RECV=25191 PORT_A=25171 PORT_B=25172 TOKEN=sip-switch-token
X1=+8617000000001 A1=+8613800000001 B1=+8613900000002
cat >"$W/privnum.toml" <<TOML
listen = "127.0.0.1:$API"
data_dir = "$W/data"
scripts_dir = "$ROOT/scripts"
admin_token = "sip-admin-token"
switch_token = "$TOKEN"
switch_control_url = "http://127.0.0.1:25180/privnum/control"
[[apps]]
app_key = "sip-app"
app_secret = "sip-secret"
mode = "AXB"
scenario = "ride-hailing"
recording = false
sms = false
call_event_url = "http://127.0.0.1:$RECV/events"
cdr_url = "http://127.0.0.1:$RECV/cdr"
numbers = [ { number = "$X1", area_code = "0755" } ]
TOML

python3 "$K/receiver.py" - $RECV >"$W/receiver.log" 2>&1 &
PIDS+=($!)
(cd "$W" && RUST_LOG=warn exec "$P" serve --config "$W/privnum.toml") >"$W/privnum.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$API/healthz" >/dev/null && break; sleep 0.1; done
curl -s -K <("$P" sign --config "$W/privnum.toml" --app sip-app --format curl) -H 'Content-Type: application/json' \
  -d "{\"relationNum\":\"$X1\",\"callerNum\":\"$A1\",\"calleeNum\":\"$B1\",\"duration\":86400}" \
  "http://127.0.0.1:$API/rest/caas/relationnumber/partners/v1.0" | grep -q '"resultcode":"0"' || { echo "bind failed" >&2; exit 1; }

kamailio_on() { # name sip-port http-port extra-defines...
  local name=$1 sip=$2 http=$3
  shift 3
  kamailio -f "$K/kamailio.cfg" -DD -E \
    -A "SIP_LISTEN=udp:127.0.0.1:$sip" -A "HTTP_LISTEN=tcp:127.0.0.1:$http" \
    -A "PRIVNUM_URL=\"http://127.0.0.1:$API\"" -A "SWITCH_TOKEN=\"$TOKEN\"" \
    -A "CALLEE_GW=\"sip:127.0.0.1:$PORT_B\"" -A "STATIC_CALLEE=\"$B1\"" "$@" >"$W/kamailio-$name.log" 2>&1 &
  PIDS+=($!)
}
kamailio_on privnum 25160 25180
kamailio_on static 25161 25181 -A WITH_STATIC_ROUTE
sleep 2
sipp -sf "$K/sipp/callee.xml" -i 127.0.0.1 -p $PORT_B -nostdin -bg >"$W/sipp-b.log" 2>&1 || true
PIDS+=($(pgrep -n -f "sipp -sf $K/sipp/callee.xml -i 127.0.0.1 -p $PORT_B" || true))

run() { # name port rate
  local dir=$W/run-$1-$3
  mkdir -p "$dir"
  (cd "$dir" && sipp -sf "$K/sipp/caller.xml" -s "$X1" -set caller "$A1" -i 127.0.0.1 -p $PORT_A \
    -r "$3" -m $(($3 * SECS)) -l $(($3 * 4)) -d 1000 -nostdin -timeout $((SECS + 40))s \
    -trace_stat -stf stat.csv -trace_rtt -rtt_freq 1 "127.0.0.1:$2" >sipp.log 2>&1) || true
  python3 - "$dir" "$1" "$3" <<'PY'
import csv, glob, sys
d, name, rate = sys.argv[1:]
rows = list(csv.DictReader(open(f"{d}/stat.csv"), delimiter=";"))
last = rows[-1]
ok, failed = int(last["SuccessfulCall(C)"]), int(last["FailedCall(C)"])
times = []
for f in glob.glob(f"{d}/*_rtt.csv"):
    for line in open(f):
        parts = line.strip().split(";")
        if len(parts) >= 2 and parts[1] and parts[1][0].isdigit():
            times.append(float(parts[1]))
times.sort()
q = lambda p: times[min(len(times) - 1, int(p * len(times)))] if times else float("nan")
print(f"| {rate}/s | {name} | {ok} | {failed} | {q(0.50):.2f} ms | {q(0.99):.2f} ms |")
PY
}

echo "| rate | route | successful calls | failed calls | INVITE -> 180 p50 | p99 |"
echo "|---|---|---|---|---|---|"
for rate in ${RATES//,/ }; do
  run static 25161 "$rate"
  run privnum 25160 "$rate"
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
