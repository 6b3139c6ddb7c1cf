#!/usr/bin/env bash
# Reloads under load lose nothing: a release geodns answers a paced stream of varied-ECS
# queries while its config is rewritten and SIGHUPed every 200 ms (alternating two valid
# configs with different answers; with MODE=invalid, an invalid one every third time) and its
# GeoIP database is replaced by rename a few times. Every answer is checked against the
# answers of the two configs, recorded beforehand from the same server binary. Prints lost,
# wrong, qps, reloads and swaps; exits non-zero when anything was lost or wrong. See README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

MODE=${MODE:-valid}
if [[ -n ${SMOKE:-} ]]; then
  : "${QPS:=2000}" "${DURATION:=3}" "${QUERIES:=5000}" "${DB_SWAPS:=1}"
fi
QPS=${QPS:-20000}
DURATION=${DURATION:-30}
INTERVAL_MS=${INTERVAL_MS:-200}
DB_SWAPS=${DB_SWAPS:-4}
QUERIES=${QUERIES:-50000}
SEED=${SEED:-1}
CROSSCHECK=${CROSSCHECK:-300}
W=${WORK_DIR:-$ROOT/target/reload}
PY=(python3 "$ROOT/benches/reload/reload.py")

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 2; }

[[ $MODE == valid || $MODE == invalid ]] || die "MODE must be valid or invalid, not '$MODE'"
awk -v q="$QPS" -v d="$DURATION" -v i="$INTERVAL_MS" 'BEGIN{exit !(q > 0 && q <= 200000 && d > 0 && d <= 120 && i >= 20)}' \
  || die "need 0 < QPS <= 200000, 0 < DURATION <= 120 (seconds), INTERVAL_MS >= 20"

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# Binaries: a release build of this work tree and of benches/load (geodns-load).
if [[ -z ${GEODNS_BIN:-} ]]; then
  log "building geodns (cargo build --release)"
  cargo build --release --locked --quiet
  GEODNS_BIN=$ROOT/target/release/geodns
fi
if [[ -z ${GEODNS_LOAD_BIN:-} ]]; then
  log "building geodns-load (benches/load)"
  cargo build --release --locked --quiet --manifest-path benches/load/Cargo.toml
  GEODNS_LOAD_BIN=$ROOT/benches/load/target/release/geodns-load
fi

mkdir -p "$W"
rm -f "$W"/*.log "$W"/timeline-*.txt "$W"/writes-*.txt

# ---------------------------------------------------------------------------------------------
# Inputs: the queries, two GeoIP files (copies of the shipped database, so the answers stay
# the same across a swap: what a swap tests is the reload path, not new data), three configs.
QFILE=$W/queries-$QUERIES-$SEED.bin
if [[ ! -s $QFILE ]]; then
  "${PY[@]}" queries "$QFILE.tmp" "$QUERIES" "$SEED" >"$W/queries.json"
  mv "$QFILE.tmp" "$QFILE"
fi
SHIPPED=$ROOT/geoip/geo-whois-asn-country.mmdb
for f in geo-1 geo-2; do cmp -s "$SHIPPED" "$W/$f.mmdb" || cp "$SHIPPED" "$W/$f.mmdb"; done
DB=$W/geo.mmdb
cp "$W/geo-1.mmdb" "$DB.tmp" && mv -f "$DB.tmp" "$DB"
PORT=$("${PY[@]}" free-port)
ADMIN=$("${PY[@]}" free-port)
"${PY[@]}" configs "$W" "$PORT" "$ADMIN" "$DB"
METRICS=http://127.0.0.1:$ADMIN/metrics

# Replaces $2 by a copy of $1 the way operators do: write beside it, rename over it.
replace() { cp "$1" "$2.tmp" && mv -f "$2.tmp" "$2"; }

# start_server CONFIG LOG: sets SPID once the server answers and its metrics are up.
start_server() {
  replace "$W/config-$1.yaml" "$W/config.yaml"
  # The builder at debug logs each table it publishes: the report needs those times.
  "$GEODNS_BIN" serve --config "$W/config.yaml" --log info,geodns::app::builder=debug >"$2" 2>&1 &
  SPID=$!
  PIDS+=("$SPID")
  timeout 70 "$GEODNS_LOAD_BIN" -s "127.0.0.1:$PORT" -f "$QFILE" --wait-ready 60 --pid "$SPID" >/dev/null \
    || die "geodns did not answer within 60 s: $(tail -3 "$2")"
  for _ in $(seq 100); do
    "${PY[@]}" metric "$METRICS" geodns_table_generation >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "no /metrics on 127.0.0.1:$ADMIN"
}
stop_server() { kill "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; }

# ---------------------------------------------------------------------------------------------
# Expected answers: each config's answer to every query, from a fresh server with that config
# (no reload involved), each query sent once.
for c in a b; do
  start_server "$c" "$W/record-$c.log"
  "$GEODNS_LOAD_BIN" -s "127.0.0.1:$PORT" -f "$QFILE" --record "$W/record-$c.txt" -c 4 -w 32 -t 2 --json \
    >"$W/record-$c.json"
  stop_server
done
# An independent look at the recording: `geodns check` (load, validate, build and resolve,
# no sockets) must give the same answers, TTLs and ECS scopes for a sample of the queries.
for c in a b; do
  "${PY[@]}" crosscheck "$QFILE" "$W/record-$c.txt" "$W/crosscheck-$c.yaml" "$CROSSCHECK" "$SEED"
  "$GEODNS_BIN" check --config "$W/config-$c.yaml" --tests "$W/crosscheck-$c.yaml" >"$W/crosscheck-$c.txt" 2>&1 \
    || die "geodns check disagrees with the answers recorded for config $c: $(grep -v '^PASS' "$W/crosscheck-$c.txt" | head -5)"
done
log "geodns check agrees with the recording: config A $(tail -1 "$W/crosscheck-a.txt"), config B $(tail -1 "$W/crosscheck-b.txt")"
"${PY[@]}" expect "$W/expect.txt" "$W/record-a.txt" "$W/record-b.txt" >"$W/expect.json"
log "expected answers recorded: $(cat "$W/expect.json")"

# ---------------------------------------------------------------------------------------------
# The run.
replace "$W/geo-1.mmdb" "$DB"
SERVER_LOG=$W/server-$MODE.log
start_server a "$SERVER_LOG"
ok0=$("${PY[@]}" metric "$METRICS" geodns_config_reloads_total 'result="ok"')
failed0=$("${PY[@]}" metric "$METRICS" geodns_config_reloads_total 'result="failed"')
TIMELINE=$W/timeline-$MODE.txt
WRITES=$W/writes-$MODE.txt
: >"$WRITES"
log "mode $MODE: $QPS qps for $DURATION s, config rewritten and SIGHUPed every $INTERVAL_MS ms, $DB_SWAPS database swaps (server PID $SPID, 127.0.0.1:$PORT)"
"$GEODNS_LOAD_BIN" -s "127.0.0.1:$PORT" -f "$QFILE" --expect "$W/expect.txt" --timeline "$TIMELINE" \
  --rate "$QPS" -d "$DURATION" -c 4 -w 256 -b 32 -t 2 --json >"$W/load-$MODE.json" 2>"$W/load-$MODE.err" &
LPID=$!
PIDS+=("$LPID")

if [[ $MODE == valid ]]; then ROTATION=(b a); else ROTATION=(b bad a); fi
ticks=$((DURATION * 1000 / INTERVAL_MS))
swap_every=$((ticks / (DB_SWAPS + 1)))
((swap_every > 0)) || swap_every=1
t0=$(date +%s%N)
tick=0 hups=0 swaps=0 swaps_seen=0 want_inode="" db_next=2
while kill -0 "$LPID" 2>/dev/null && ((tick < ticks)); do
  tick=$((tick + 1))
  # Sleep until this tick's time.
  now=$(date +%s%N)
  wait_ns=$((t0 + tick * INTERVAL_MS * 1000000 - now))
  ((wait_ns > 0)) && sleep "$(awk -v n="$wait_ns" 'BEGIN{printf "%.3f", n/1e9}')"
  # Did the server map the database swapped in last? (/proc/PID/maps names the inode.)
  if [[ -n $want_inode ]] && awk -v i="$want_inode" -v p="$DB" '$5 == i && $6 == p {f=1} END{exit !f}' "/proc/$SPID/maps"; then
    swaps_seen=$((swaps_seen + 1))
    want_inode=""
  fi
  if ((DB_SWAPS > swaps && tick % swap_every == 0)); then
    replace "$W/geo-$db_next.mmdb" "$DB"
    want_inode=$(stat -c %i "$DB")
    db_next=$((3 - db_next))
    swaps=$((swaps + 1))
  fi
  c=${ROTATION[$(((tick - 1) % ${#ROTATION[@]}))]}
  # When the rename may have happened: between these two clock readings (microseconds;
  # EPOCHREALTIME needs no process, which a busy host can take milliseconds to start).
  before=${EPOCHREALTIME//[.,]/}
  replace "$W/config-$c.yaml" "$W/config.yaml"
  echo "$before ${EPOCHREALTIME//[.,]/} $c" >>"$WRITES"
  kill -HUP "$SPID"
  hups=$((hups + 1))
done
# Datagrams the kernel dropped because a socket's receive buffer was full (the skmem "d"
# counter of `ss`), on the server's sockets and on the load generator's (whose peer is the
# server), taken just before the load generator exits: where a lost query was lost.
udp_drops() { # local|peer
  { ss -uamnH "$([[ $1 == local ]] && echo sport || echo dport) = :$PORT" 2>/dev/null || true; } \
    | { grep -o ',d[0-9]*)' || true; } | tr -dc '0-9\n' | awk '{s += $1} END {print s + 0}'
}
drops_server=0 drops_client=0
while kill -0 "$LPID" 2>/dev/null; do
  d=$(udp_drops local); ((d < drops_server)) || drops_server=$d
  d=$(udp_drops peer); ((d < drops_client)) || drops_client=$d
  sleep 0.2
done
wait "$LPID" || die "geodns-load failed: $(cat "$W/load-$MODE.err")"
# The last swap: give the watcher or the last SIGHUP's reload a moment to map it.
for _ in $(seq 30); do
  [[ -z $want_inode ]] && break
  if awk -v i="$want_inode" -v p="$DB" '$5 == i && $6 == p {f=1} END{exit !f}' "/proc/$SPID/maps"; then
    swaps_seen=$((swaps_seen + 1)); want_inode=""
  else
    sleep 0.1
  fi
done
sleep 0.5 # the last reloads' log lines and counters
ok1=$("${PY[@]}" metric "$METRICS" geodns_config_reloads_total 'result="ok"')
failed1=$("${PY[@]}" metric "$METRICS" geodns_config_reloads_total 'result="failed"')
alive=yes
kill -0 "$SPID" 2>/dev/null || alive=no
stop_server

load=$(tail -1 "$W/load-$MODE.json")
j() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" <<<"$load"; }
sent=$(j sent) received=$(j received) lost=$(j lost) wrong=$(j wrong) checked=$(j checked) qps=$(j qps)
matched=$(sed -n 's/.*"matched":\[\([0-9,]*\)\].*/\1/p' <<<"$load")
rep=$("${PY[@]}" report "$TIMELINE" "$SERVER_LOG" "$WRITES")
jr() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$rep" "$1"; }
reloads_ok=$((ok1 - ok0)) reloads_failed=$((failed1 - failed0))
summary=$W/results-$MODE.txt
{
  echo "mode:               $MODE ($(date -u +%Y-%m-%dT%H:%M:%SZ), geodns $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "load:               $QPS qps asked for $DURATION s, $(sed -n 's/.*"ecs_prefixes": \([0-9]*\).*/\1/p' "$W/queries.json") distinct ECS prefixes in $QUERIES queries"
  echo "queries sent:       $sent"
  echo "answered:           $received"
  echo "lost:               $lost"
  echo "wrong:              $wrong (of $checked checked)"
  echo "answers by config:  A $(cut -d, -f1 <<<"$matched"), B $(cut -d, -f2 <<<"$matched") (a query both configs answer alike counts for both; $(sed -n 's/.*"answers_differ": \([0-9]*\).*/\1/p' "$W/expect.json") of $QUERIES queries differ)"
  echo "qps answered:       $qps"
  echo "UDP receive drops:  server sockets $drops_server, load generator sockets $drops_client (kernel, full receive buffer; sampled every 0.2 s)"
  echo "SIGHUPs sent:       $hups (config rewritten by rename each time: $(jr written)); $(jr sighup_logged) received (signals sent during a busy reload merge)"
  echo "reloads (metrics):  $reloads_ok ok, $reloads_failed failed (geodns_config_reloads_total)"
  echo "reloads (log):      $(jr reloads_ok_logged) 'config reloaded', $(jr reloads_failed_logged) 'reload rejected'"
  echo "database swaps:     $swaps by rename, $swaps_seen seen mapped by the server (/proc/PID/maps)"
  echo "config epochs:      $(jr epochs) (from a reload's first table to the next reload; $(jr epochs_by_majority) judged by the majority of their answers); answers inside one: $(jr epochs_answers), not of the config it loaded: $(jr other_config)"
  if [[ $MODE == invalid ]]; then
    echo "invalid windows:    $(jr invalid_windows) epochs with a rejected reload; answers after the rejection: $(jr answers_in_invalid_windows), not of the last good config: $(jr not_last_good)"
    echo "reload error:       $(jr first_error)"
  fi
  echo "server:             alive at the end: $alive; panics logged: $(grep -c -i panic "$SERVER_LOG" || true)"
} | tee "$summary"
if [[ -s $W/load-$MODE.err ]]; then
  log "geodns-load said:"; head -20 "$W/load-$MODE.err" >&2
fi

fail=()
((lost == 0)) || fail+=("$lost lost")
((wrong == 0)) || fail+=("$wrong wrong")
[[ $alive == yes ]] || fail+=("server died")
((reloads_ok > 0)) || fail+=("no reload happened")
((swaps_seen == swaps)) || fail+=("$((swaps - swaps_seen)) database swaps not seen mapped")
[[ $(jr other_config) == 0 ]] || fail+=("answers not of the config their epoch loaded")
if [[ $MODE == invalid ]]; then
  ((reloads_failed > 0)) || fail+=("no reload was rejected")
  [[ $(jr not_last_good) == 0 ]] || fail+=("answers not from the last good config during an invalid one")
  [[ $(jr answers_in_invalid_windows) != 0 ]] || fail+=("no answers checked during an invalid config")
fi
if ((${#fail[@]})); then
  log "FAILED: ${fail[*]} (details in $W)"
  exit 1
fi
log "ok: results in $summary"
