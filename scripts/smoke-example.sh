#!/usr/bin/env bash
# Runs the README's first command (the example config) and checks what the README says dig gets.
# Uses the example's fixed port 8053 on loopback; stops only the server it started.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked
bin=${CARGO_TARGET_DIR:-target}/release/geodns
log=$(mktemp)
"$bin" serve --config config/example.yaml >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT

for _ in $(seq 1 50); do
  if dig @127.0.0.1 -p 8053 +time=1 +tries=1 +short geo.example SOA >/dev/null 2>&1; then break; fi
  sleep 0.1
done

fail=0
pass=0
ok() { echo "ok    $1"; pass=$((pass + 1)); }
bad() { echo "FAIL  $1"; fail=$((fail + 1)); }
expect() { # name type subnet want
  local got
  got=$(dig @127.0.0.1 -p 8053 +time=2 +tries=2 +short "$1" "$2" "+subnet=$3")
  if [ "$got" = "$4" ]; then ok "$1 $2 from $3 -> $got"; else bad "$1 $2 from $3 -> '$got', want '$4'"; fi
}
expect app.geo.example A 81.2.69.0/24 192.0.2.1
expect app.geo.example A 103.6.148.0/24 192.0.2.4
expect app.geo.example AAAA 2a01:4f8::/32 2001:db8::2
# The scope comes back in the ECS option, over UDP and over TCP, and over IPv6.
dig @127.0.0.1 -p 8053 app.geo.example +subnet=81.2.69.0/24 | grep -q 'CLIENT-SUBNET: 81.2.69.0/24/18' \
  && ok "ECS scope /18 echoed" || bad "ECS scope"
[ "$(dig @127.0.0.1 -p 8053 +tcp +short app.geo.example +subnet=103.6.148.0/24)" = 192.0.2.4 ] \
  && ok "TCP" || bad "TCP"
[ "$(dig @::1 -p 8053 +short app.geo.example +subnet=103.6.148.0/24)" = 192.0.2.4 ] \
  && ok "IPv6 listener" || bad "IPv6 listener"
# SIGTERM stops it cleanly.
kill -TERM "$pid"
if wait "$pid"; then ok "clean exit on SIGTERM"; else bad "exit status $? on SIGTERM"; fi
trap 'rm -f "$log"' EXIT
if [ "$fail" -ne 0 ]; then echo "--- server log"; cat "$log"; fi
echo "smoke: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
