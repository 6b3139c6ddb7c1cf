#!/usr/bin/env bash
# Soak: geodns (release build, config/example.yaml on a free loopback port) under mixed traffic
# for a bounded time, watching its memory and that it stays up.
#
#   benches/soak.sh                 # 120 s
#   DURATION=60 QPS=5000 benches/soak.sh
#   SOAK_NO_BUILD=1 benches/soak.sh # use the release binary as it is
#
# Traffic, all to 127.0.0.1:
#   - dnsperf, plain: answers, NODATA, CNAME, NXDOMAIN, REFUSED (other zones), AXFR, ANY;
#   - dnsperf, the same with an ECS option (81.2.69.0/24) on every query;
#   - benches/soak_garbage.py: random bytes, mutated queries, QR=1 packets, and valid queries
#     for random names with random ECS subnets (no cache may grow with them), at a bounded rate.
# Reports RSS (before, peak, after), dnsperf's sent/completed/lost, the garbage sender's
# counts, and whether the server PID is unchanged and alive at the end. Stops only what it
# started, by PID. RRL is off in the soak config (dnsperf is one client prefix and would be
# limited by design); SOAK_RRL=on keeps it on.
set -euo pipefail

DURATION=${DURATION:-120}
QPS=${QPS:-10000}          # per dnsperf instance
GARBAGE_PPS=${GARBAGE_PPS:-2000}
SAMPLE=${SAMPLE:-5}
SOAK_RRL=${SOAK_RRL:-off}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v dnsperf >/dev/null || { echo "dnsperf is missing: apt-get install dnsperf" >&2; exit 2; }

if [ "${SOAK_NO_BUILD:-0}" != 1 ]; then
  echo "== building (release)"
  (cd "$ROOT" && cargo build --release --quiet)
fi

# A port free for both UDP and TCP (bound by the kernel, then released).
PORT=$(python3 - <<'EOF'
import socket
for _ in range(50):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); p = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        t.close(); u.close()
EOF
)
[ "$PORT" != 53 ] || { echo "refusing port 53" >&2; exit 2; }

rrl_enabled=false; [ "$SOAK_RRL" = on ] && rrl_enabled=true
sed -e "s|dns_listen: .*|dns_listen: [\"127.0.0.1:$PORT\"]\n  rrl: { enabled: $rrl_enabled }|" \
    -e "/admin_listen:/d" \
    -e "s|database: ../geoip/|database: $ROOT/geoip/|" \
    "$ROOT/config/example.yaml" > "$WORK/soak.yaml"

"$ROOT/target/release/geodns" serve --config "$WORK/soak.yaml" > "$WORK/server.log" 2>&1 &
SERVER=$!
PIDS+=("$SERVER")
for _ in $(seq 50); do
  dig +short +time=1 +tries=1 -p "$PORT" @127.0.0.1 static.geo.example >/dev/null 2>&1 && break
  sleep 0.2
done
kill -0 "$SERVER" 2>/dev/null || { echo "server did not start:"; cat "$WORK/server.log"; exit 1; }

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

cat > "$WORK/queries.txt" <<'EOF'
app.geo.example A
app.geo.example AAAA
APP.Geo.Example A
www.geo.example A
static.geo.example A
v6.geo.example AAAA
geo.example SOA
geo.example NS
geo.example TXT
ent.geo.example A
app.geo.example MX
nope.geo.example A
no.such.name.geo.example AAAA
other.org A
example.com AAAA
geo.example AXFR
app.geo.example ANY
EOF
# ECS option 8: family 1, source /24, scope 0, 81.2.69
ECS="8:00011800510245"

RSS_BEFORE=$(rss "$SERVER")
echo "== soak: ${DURATION}s on 127.0.0.1:$PORT (pid $SERVER, RSS ${RSS_BEFORE} kB), dnsperf 2x${QPS} qps + ${GARBAGE_PPS} garbage pps"

dnsperf -s 127.0.0.1 -p "$PORT" -d "$WORK/queries.txt" -l "$DURATION" -Q "$QPS" -c 4 -t 2 \
  > "$WORK/plain.txt" 2>&1 &
PIDS+=("$!"); PLAIN=$!
dnsperf -s 127.0.0.1 -p "$PORT" -d "$WORK/queries.txt" -l "$DURATION" -Q "$QPS" -c 4 -t 2 -e -E "$ECS" \
  > "$WORK/ecs.txt" 2>&1 &
PIDS+=("$!"); ECSP=$!
python3 "$ROOT/benches/soak_garbage.py" 127.0.0.1 "$PORT" "$DURATION" "$GARBAGE_PPS" > "$WORK/garbage.txt" 2>&1 &
PIDS+=("$!"); GARBAGE=$!

PEAK=$RSS_BEFORE
echo "   t(s)  RSS(kB)"
START=$(date +%s)
while kill -0 "$PLAIN" 2>/dev/null || kill -0 "$ECSP" 2>/dev/null; do
  sleep "$SAMPLE"
  r=$(rss "$SERVER"); [ "$r" -gt "$PEAK" ] && PEAK=$r
  printf "   %4d  %s\n" $(( $(date +%s) - START )) "$r"
  [ $(( $(date +%s) - START )) -gt $(( DURATION + 30 )) ] && break
done
wait "$PLAIN" "$ECSP" "$GARBAGE" 2>/dev/null || true
sleep 1
RSS_AFTER=$(rss "$SERVER")

summary() {
  awk '/Queries sent:/ {s=$3} /Queries completed:/ {c=$3} /Queries lost:/ {l=$3}
       /Queries per second:/ {q=$4}
       END {printf "sent %s, completed %s, lost %s, %s qps", s, c, l, q}' "$1"
}
echo "== results"
echo "dnsperf plain: $(summary "$WORK/plain.txt")"
echo "dnsperf ECS:   $(summary "$WORK/ecs.txt")"
echo "garbage:       $(tail -1 "$WORK/garbage.txt")"
echo "RSS:           before ${RSS_BEFORE} kB, peak ${PEAK} kB, after ${RSS_AFTER} kB"
if kill -0 "$SERVER" 2>/dev/null; then
  echo "server:        pid $SERVER alive, never restarted"
else
  echo "server:        pid $SERVER DIED"; tail -20 "$WORK/server.log"; exit 1
fi
echo "panics logged: $(grep -ci panic "$WORK/server.log" || true)"
