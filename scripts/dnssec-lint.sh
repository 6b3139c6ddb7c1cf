#!/usr/bin/env bash
# DNSSEC checked from outside: dnsviz and zonemaster-cli (both from Debian) run against a signed
# geodns, and the script fails if either reports a DNSSEC error. See docs/dnssec.md, "Checked by
# dnsviz and zonemaster".
#
#   bash scripts/dnssec-lint.sh            # 50-100 s once the packages are installed
#
# Everything runs in a private network namespace (`unshare -n`, or `unshare -rn` when not root;
# and a PID namespace, so nothing it starts outlives it):
# its own loopback interface, with the documentation addresses 192.0.2.53 and 198.51.100.53 on
# it for the zone's two name servers, and no route out. Both tools ask name servers on port 53
# and have no option for another port, so geodns listens on port 53 there: that port is the
# namespace's own, invisible to the host, which keeps the project's "never port 53" rule for the
# host's namespace. Nothing leaves the namespace; the tools' attempts to reach the real root
# servers fail at once (no route).
#
# The zone is not delegated from anywhere, so both tools are given the delegation (the NS names
# and their addresses) and the DS that `geodns dnssec ds` prints, as for a zone about to be
# delegated: `dnsviz probe -A -N ZONE:NS=ADDR,... -D ZONE:DSFILE` (dnsviz serves that delegation
# from a BIND `named` of its own on the namespace's loopback) and `zonemaster-cli --ns NAME/ADDR
# --ds TAG,ALG,TYPE,DIGEST`. dnsviz's trust anchor (`grok -t`) is the zone's DNSKEY RRset.
#
# Checked, for each key setup (VARIANTS: p256 = one ECDSA P-256 CSK, ed25519 = one Ed25519 CSK,
# rollover = two P-256 keys published and signing, both DS at the parent; split = a P-256 KSK
# and a P-256 ZSK, the KSK's DS at the parent):
#   - dnsviz probe of the apex, geo names (with and without max_answers), a CNAME to a geo name,
#     static A and AAAA, a name under an empty non-terminal and the empty non-terminal itself
#     (dnsviz adds NXDOMAIN and NODATA queries of its own), once without ECS and, for the first
#     variant, once per ECS prefix in ECS_PREFIXES, so the signed answers of every site are
#     checked (the script fails unless app's four A answers were seen); `dnsviz grok`
#     must report no error and no warning anywhere, and every RRset must be SECURE in `dnsviz
#     print`;
#   - zonemaster-cli, all modules: no message of level WARNING or above from its DNSSEC module,
#     and no ERROR or CRITICAL from any module except the lab's expected ones (LAB_TAGS:
#     documentation addresses as name servers);
#   - the checks themselves: the same zone with the DS of another key must make both tools
#     report a DNSSEC error (dnsviz NO_SEP, zonemaster DNSSEC02), or the script fails.
#
# Environment: GEODNS_BIN (default: target/release/geodns, built if missing), VARIANTS
# ["p256 ed25519 rollover split"], ECS_PREFIXES ["81.2.69.0/24 103.6.148.0/24 2a01:4f8::/32 8.8.8.0/24"].
# Output in target/dnssec-lint/: per variant the probe, grok and zonemaster output and the
# servers' logs; summary.txt.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/target/dnssec-lint
VARIANTS=${VARIANTS:-"p256 ed25519 rollover split"}
ECS_PREFIXES=${ECS_PREFIXES:-"81.2.69.0/24 103.6.148.0/24 2a01:4f8::/32 8.8.8.0/24"}
NS1=192.0.2.53
NS2=198.51.100.53
ZONE=geo.example
# zonemaster tags expected in this lab and not about DNSSEC: the name servers' addresses are in
# documentation prefixes (RFC 5737).
LAB_TAGS=${LAB_TAGS:-"NAMESERVER_IP_PRIVATE_NETWORK"}

log() { printf '[%3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Outside the namespace: packages, the binary, then re-run this script inside a new namespace.
if [[ ${1:-} != --inside ]]; then
  need=()
  command -v dnsviz >/dev/null || need+=(dnsviz)
  command -v zonemaster-cli >/dev/null || need+=(zonemaster-cli)
  # dnsviz serves the delegation given by -N/-D with BIND's named (and checks it with
  # named-checkconf); grok's trust-anchor mode needs pygraphviz.
  command -v named >/dev/null || need+=(bind9)
  command -v named-checkconf >/dev/null || need+=(bind9-utils)
  command -v dig >/dev/null || need+=(dnsutils)
  command -v ip >/dev/null || need+=(iproute2)
  /usr/bin/python3 -c 'import pygraphviz' 2>/dev/null || need+=(python3-pygraphviz)
  if ((${#need[@]})); then
    log "installing ${need[*]}"
    # A policy-rc.d keeps the packages (bind9) from starting their services where an init
    # system would; removed afterwards if this script made it.
    made_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
      made_policy=1
    fi
    timeout 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "${need[@]}" >/dev/null
    [[ -n $made_policy ]] && rm -f /usr/sbin/policy-rc.d
  fi
  if [[ -z ${GEODNS_BIN:-} ]]; then
    GEODNS_BIN=$ROOT/target/release/geodns
    if [[ ! -x $GEODNS_BIN ]]; then
      log "cargo build --release --bin geodns"
      (cd "$ROOT" && timeout 1800 cargo build --release --locked --bin geodns -q)
    fi
  fi
  export GEODNS_BIN
  rm -rf "$OUT"
  mkdir -p "$OUT"
  # A PID namespace too (-p -f --kill-child): when the script ends, however it ends, the kernel stops
  # everything it started there, the named that dnsviz starts in the background included.
  if ((EUID == 0)); then ns=(unshare -n -p -f --kill-child); else ns=(unshare -r -n -p -f --kill-child); fi
  exec timeout 600 "${ns[@]}" -- bash "${BASH_SOURCE[0]}" --inside
fi

# ---------------------------------------------------------------------------------------------
# Inside the namespace.
[[ $(ip -o link | wc -l) -le 1 ]] || die "not in a private network namespace (more than lo): refusing to use port 53"
ip link set lo up
ip addr add "$NS1/32" dev lo
ip addr add "$NS2/32" dev lo

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# dnsviz 0.9.4 (Debian 12) checks pygraphviz's version through `pygraphviz.release`, a module
# that newer pygraphviz (Debian's 1.7) no longer has, and so refuses `grok -t` ("pygraphviz is
# required, but not installed"). This runs dnsviz with that one attribute provided.
DNSVIZ_SHIM=$OUT/dnsviz-shim.py
cat >"$DNSVIZ_SHIM" <<'EOF'
import runpy, sys, types
import pygraphviz
if not hasattr(pygraphviz, "release"):
    release = types.ModuleType("pygraphviz.release")
    release.version = pygraphviz.__version__
    sys.modules["pygraphviz.release"] = release
    pygraphviz.release = release
sys.argv = ["dnsviz"] + sys.argv[1:]
runpy.run_path("/usr/bin/dnsviz", run_name="__main__")
EOF

write_config() { # DIR KEYFILE...
  local dir=$1 keys
  shift
  keys=$(printf '%s, ' "$@")
  cat >"$dir/config.yaml" <<EOF
# Written by scripts/dnssec-lint.sh: config/example.yaml's zone, two name servers, signed.
server:
  dns_listen: ["$NS1:53", "$NS2:53"]
geoip:
  database: $ROOT/geoip/geo-whois-asn-country.mmdb
sites:
  london:    { location: [51.51, -0.13] }
  frankfurt: { location: [50.11, 8.68] }
  seattle:   { location: [47.61, -122.33] }
  singapore: { location: [1.35, 103.82] }
zones:
  $ZONE.:
    soa: { mname: ns1.$ZONE., rname: hostmaster.$ZONE., serial: 1,
           refresh: 14400, retry: 3600, expire: 1209600, minimum: 300 }
    ns: [ns1.$ZONE., ns2.$ZONE.]
    ttl: 300
    dnssec:
      keys: [${keys%, }]
    records:
      "@":      { TXT: ["$ZONE GeoDNS zone"], MX: ["10 mail"] }
      ns1:      { A: [$NS1] }
      ns2:      { A: [$NS2] }
      mail:     { A: [192.0.2.25] }
      static:   { A: [192.0.2.80] }
      v6:       { AAAA: ["2001:db8::53"] }
      www:      { CNAME: app }
      host.ent: { A: [192.0.2.54] }
    geo:
      app:
        ttl: 60
        all_down: all
        sites:
          london:    [192.0.2.1, "2001:db8::1"]
          frankfurt: [192.0.2.2, "2001:db8::2"]
          seattle:   [192.0.2.3, "2001:db8::3"]
          singapore: [192.0.2.4, "2001:db8::4"]
      one:
        ttl: 60
        max_answers: 1
        sites:
          london:    [192.0.2.11, 192.0.2.12]
          frankfurt: [192.0.2.21, 192.0.2.22]
          seattle:   [192.0.2.31]
          singapore: [192.0.2.41]
EOF
}

start_geodns() { # DIR
  "$GEODNS_BIN" serve --config "$1/config.yaml" >"$1/geodns.log" 2>&1 &
  GPID=$!
  PIDS+=("$GPID")
  local i
  for i in $(seq 100); do
    if dig @"$NS1" +time=1 +tries=1 +short "$ZONE" SOA | grep -q . \
      && dig @"$NS2" +time=1 +tries=1 +short "$ZONE" SOA | grep -q .; then return 0; fi
    kill -0 "$GPID" 2>/dev/null || break
    sleep 0.1
  done
  die "geodns did not answer on $NS1:53 and $NS2:53: $(tail -5 "$1/geodns.log")"
}

stop_geodns() {
  kill -TERM "$GPID" 2>/dev/null || true
  wait "$GPID" 2>/dev/null || true
}

NAMES="$ZONE app.$ZONE one.$ZONE www.$ZONE static.$ZONE v6.$ZONE host.ent.$ZONE ent.$ZONE"

# dnsviz over every probe of DIR with DSFILE; prints the errors and warnings grok found (one
# line each), nothing when there are none.
run_dnsviz() { # DIR DSFILE TAG "ECS..." NAMES
  local dir=$1 ds=$2 tag=$3 ecs=$4 names=$5 e i=0 probes=()
  dig @"$NS1" +noall +answer "$ZONE" DNSKEY >"$dir/trust-anchor-$tag.txt"
  for e in "" $ecs; do
    i=$((i + 1))
    local p=$dir/dnsviz-$tag-$i
    # shellcheck disable=SC2086
    timeout 120 dnsviz probe -A -N "$ZONE:ns1.$ZONE=$NS1,ns2.$ZONE=$NS2" -D "$ZONE:$ds" \
      ${e:+-e "$e"} -o "$p.probe.json" $names >"$p.probe.log" 2>&1 \
      || die "dnsviz probe failed (${e:-no ECS}): $(tail -3 "$p.probe.log")"
    timeout 120 /usr/bin/python3 "$DNSVIZ_SHIM" grok -t "$dir/trust-anchor-$tag.txt" -o "$p.grok.json" <"$p.probe.json" 2>"$p.grok.log" \
      || die "dnsviz grok failed: $(tail -3 "$p.grok.log")"
    timeout 120 /usr/bin/python3 "$DNSVIZ_SHIM" print -t "$dir/trust-anchor-$tag.txt" -r "$p.probe.json" >"$p.print.txt" 2>>"$p.grok.log" \
      || die "dnsviz print failed: $(tail -3 "$p.grok.log")"
    probes+=("$p")
  done
  /usr/bin/python3 - "${probes[@]}" <<'EOF'
import json, sys
def walk(o, path, out):
    if isinstance(o, dict):
        for k, v in o.items():
            if k in ("errors", "warnings") and v:
                for item in v:
                    out.append("%s %s: %s %s" % (k[:-1], "/".join(path), item.get("code"), item.get("description")))
            else:
                walk(v, path + [k], out)
    elif isinstance(o, list):
        for v in o:
            walk(v, path, out)
for p in sys.argv[1:]:
    out = []
    walk(json.load(open(p + ".grok.json")), [], out)
    for line in out:
        print("%s: %s" % (p.rsplit("/", 1)[1], line))
EOF
}

# The RRsets dnsviz print shows as not SECURE ("[.]" is secure; the DS at the unsigned parent
# is "[-]", insecure, as it must be without a signed parent).
not_secure() { # DIR TAG
  grep -h '^\s*\[[^.]' "$1"/dnsviz-"$2"-*.print.txt | grep -v '\]  DS: ' || true
}

# zonemaster-cli, all modules (--raw); prints "LEVEL MODULE TESTCASE TAG" lines at NOTICE and above.
run_zonemaster() { # DIR DSFILE TAG
  local dir=$1 ds=$2 tag=$3 dsarg
  dsarg=$(awk '$4 == "DS" {print $5 "," $6 "," $7 "," $8}' "$ds" | paste -sd' ')
  local args=()
  for d in $dsarg; do args+=(--ds "$d"); done
  timeout 300 zonemaster-cli --no-ipv6 --ns "ns1.$ZONE/$NS1" --ns "ns2.$ZONE/$NS2" "${args[@]}" \
    --level NOTICE --no-progress --raw --show-module --show-testcase "$ZONE" >"$dir/zonemaster-$tag.raw.txt" 2>&1 \
    || die "zonemaster-cli failed: $(tail -3 "$dir/zonemaster-$tag.raw.txt")"
  # --raw: seconds, level, module, testcase, then the message tag and its arguments.
  awk '$2 ~ /^(NOTICE|WARNING|ERROR|CRITICAL)$/ {
         tag = $5; sub(/:.*/, "", tag); print $2, $3, $4, tag }' "$dir/zonemaster-$tag.raw.txt"
}

FAIL=0
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY" >&2; }
say "dnsviz $(dpkg-query -W -f '${Version}' dnsviz 2>/dev/null), zonemaster-cli $(dpkg-query -W -f '${Version}' zonemaster-cli 2>/dev/null) (engine $(dpkg-query -W -f '${Version}' libzonemaster-perl 2>/dev/null)), geodns $("$GEODNS_BIN" --version 2>/dev/null | head -1)"

for variant in $VARIANTS; do
  dir=$OUT/$variant
  mkdir -p "$dir"
  case $variant in
    p256) "$GEODNS_BIN" dnssec keygen "$dir/a.key" >/dev/null; write_config "$dir" a.key ;;
    ed25519) "$GEODNS_BIN" dnssec keygen "$dir/a.key" --algorithm ed25519 >/dev/null; write_config "$dir" a.key ;;
    rollover)
      "$GEODNS_BIN" dnssec keygen "$dir/a.key" >/dev/null
      "$GEODNS_BIN" dnssec keygen "$dir/b.key" >/dev/null
      write_config "$dir" a.key b.key ;;
    split)
      "$GEODNS_BIN" dnssec keygen "$dir/a.key" >/dev/null
      "$GEODNS_BIN" dnssec keygen "$dir/z.key" >/dev/null
      write_config "$dir" a.key
      sed -i "s|^\( *\)keys: \[a.key\]|\1ksk: [a.key]\n\1zsk: [z.key]|" "$dir/config.yaml" ;;
    *) die "unknown variant '$variant' (known: p256 ed25519 rollover split)" ;;
  esac
  "$GEODNS_BIN" dnssec ds --config "$dir/config.yaml" >"$dir/ds.txt"
  # The DS of a key the zone does not have: both tools must call it an error.
  "$GEODNS_BIN" dnssec keygen "$dir/other.key" >/dev/null
  sed "s|keys: \[.*\]|keys: [other.key]|; s|ksk: \[[^]]*\]|ksk: [other.key]|" "$dir/config.yaml" >"$dir/other.yaml"
  "$GEODNS_BIN" dnssec ds --config "$dir/other.yaml" >"$dir/wrong-ds.txt"
  start_geodns "$dir"
  log "$variant: geodns up (PID $GPID), $(grep -c ' DS ' "$dir/ds.txt") DS"

  # The ECS probes (one signed answer per site) with the first variant; the others' keys sign
  # the same RRsets, so one probe without ECS each keeps the script within CI's time.
  ecs=""
  [[ $variant == "${VARIANTS%% *}" ]] && ecs=$ECS_PREFIXES
  found=$(run_dnsviz "$dir" "$dir/ds.txt" ok "$ecs" "$NAMES")
  insecure=$(not_secure "$dir" ok)
  answers=$(grep -h -A0 '^app\.' -A2 "$dir"/dnsviz-ok-*.print.txt | grep -o 'A: [0-9.]*' | sort -u | paste -sd' ')
  if [[ -n $found || -n $insecure ]]; then
    say "FAIL $variant: dnsviz:"; say "$found"; say "$insecure"; FAIL=1
  else
    say "ok   $variant: dnsviz grok: no errors, no warnings over $(find "$dir" -name "dnsviz-ok-*.grok.json" | wc -l) probes (no ECS${ecs:+, ECS $ecs}); every RRset SECURE; app answers seen: $answers"
  fi
  if [[ -n $ecs ]] && (($(wc -w <<<"$answers") < 6)); then
    say "FAIL $variant: expected the signed answers of at least 3 sites for app (A: ... pairs), saw: $answers"; FAIL=1
  fi

  zm=$(run_zonemaster "$dir" "$dir/ds.txt" ok)
  dnssec_bad=$(awk '$2 == "DNSSEC" && $1 ~ /^(WARNING|ERROR|CRITICAL)$/' <<<"$zm")
  other_bad=""
  while read -r level module testcase tag; do
    [[ -z $level || $module == DNSSEC ]] && continue
    [[ $level == ERROR || $level == CRITICAL ]] || continue
    [[ " $LAB_TAGS " == *" $tag "* ]] && continue
    other_bad+="$level $module $testcase $tag"$'\n'
  done <<<"$zm"
  if [[ -n $dnssec_bad || -n $other_bad ]]; then
    say "FAIL $variant: zonemaster:"; say "$dnssec_bad$other_bad"; FAIL=1
  else
    say "ok   $variant: zonemaster: no DNSSEC message at WARNING or above; at NOTICE and above, all modules: $(awk '{print $1 " " $4}' <<<"$zm" | sort | uniq -c | awk '{printf "%s%s %s (%s)", (n++ ? ", " : ""), $3, $2, $1}')"
  fi

  # The checks can fail: the DS of another key.
  bad_viz=$(run_dnsviz "$dir" "$dir/wrong-ds.txt" wrong "" "$ZONE" | grep -c 'NO_SEP' || true)
  bad_zm=$(run_zonemaster "$dir" "$dir/wrong-ds.txt" wrong | awk '$2 == "DNSSEC" && $1 == "ERROR"' | wc -l)
  if ((bad_viz > 0 && bad_zm > 0)); then
    say "ok   $variant: with the DS of another key, dnsviz reports NO_SEP ($bad_viz probes) and zonemaster $bad_zm DNSSEC errors"
  else
    say "FAIL $variant: with the DS of another key, dnsviz NO_SEP in $bad_viz probes, zonemaster $bad_zm DNSSEC errors (both must be > 0)"; FAIL=1
  fi
  stop_geodns
done

if ((FAIL)); then log "DNSSEC lint FAILED (details in $OUT)"; exit 1; fi
log "DNSSEC lint passed ($OUT/summary.txt)"
