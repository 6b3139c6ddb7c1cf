#!/usr/bin/env bash
# Runs the image scripts/build-image.sh built (localhost/geodns:<crate version>, or GEODNS_IMAGE) the way the
# Kubernetes manifests do: read-only root filesystem, user 65532, every capability dropped, port
# 53 allowed by the namespaced sysctl net.ipv4.ip_unprivileged_port_start. Its ports are
# published on 127.0.0.1 only, on ports podman picks. Then asks it the README's question over
# UDP and TCP with dig, checks /readyz, and stops it with SIGTERM.
# Stops and removes only the container it started (by its name).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/podman-common.sh

need=()
command -v dig >/dev/null 2>&1 || need+=(dnsutils)
command -v curl >/dev/null 2>&1 || need+=(curl)
apt_install "${need[@]}"
podman_setup
# Another build of the image, e.g. one from the Containerfile: GEODNS_IMAGE=name:tag.
IMAGE=${GEODNS_IMAGE:-$IMAGE}

if ! "${PODMAN[@]}" image exists "$IMAGE"; then
  echo "no image $IMAGE: run scripts/build-image.sh first" >&2
  exit 1
fi

name=geodns-smoke-$$
cleanup() { "${PODMAN[@]}" rm --force --time 0 "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT

"${PODMAN[@]}" run --detach --name "$name" \
  --read-only --user 65532 --cap-drop ALL --security-opt no-new-privileges \
  --sysctl net.ipv4.ip_unprivileged_port_start=53 \
  --publish 127.0.0.1::53/udp --publish 127.0.0.1::53/tcp --publish 127.0.0.1::9153/tcp \
  "$IMAGE" >/dev/null

# The host ports podman picked, e.g. "127.0.0.1:41234".
host_port() { "${PODMAN[@]}" port "$name" "$1" | head -n1 | sed 's/.*://'; }
udp=$(host_port 53/udp)
tcp=$(host_port 53/tcp)
admin=$(host_port 9153/tcp)
echo "container $name: dns 127.0.0.1:$udp/udp 127.0.0.1:$tcp/tcp, admin 127.0.0.1:$admin"

fail=0
pass=0
ok() { echo "ok    $1"; pass=$((pass + 1)); }
bad() { echo "FAIL  $1"; fail=$((fail + 1)); }
running() { [ "$("${PODMAN[@]}" inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" = true ]; }
readyz() { curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$admin/readyz" || true; }

# Wait for /readyz (at most 100 tries, 0.1 s apart), giving up early if the container exits.
code=000
for _ in $(seq 1 100); do
  code=$(readyz)
  [ "$code" = 200 ] && break
  running || break
  sleep 0.1
done
[ "$code" = 200 ] && ok "/readyz 200" || bad "/readyz answered '$code'"

# What the container runs as, from the kernel's view of its process.
pid=$("${PODMAN[@]}" inspect --format '{{.State.Pid}}' "$name")
if [ "$pid" -gt 0 ] 2>/dev/null && [ -r "/proc/$pid/status" ]; then
  uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
  caps=$(awk '/^CapEff:/ { print $2 }' "/proc/$pid/status")
  [ "$uid" = 65532 ] && ok "runs as uid 65532" || bad "runs as uid '$uid'"
  [ "$caps" = 0000000000000000 ] && ok "no effective capabilities" || bad "effective capabilities $caps"
else
  bad "no process to inspect (pid '$pid')"
fi
[ "$("${PODMAN[@]}" inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$name")" = true ] \
  && ok "read-only root filesystem" || bad "root filesystem is writable"
label=$("${PODMAN[@]}" image inspect --format '{{index .Labels "org.opencontainers.image.version"}}' "$IMAGE")
[ "$label" = "$VERSION" ] && ok "version label $label" || bad "version label '$label', want $VERSION"

expect() { # description, dig arguments..., want (last)
  local what=$1 want=${!#} got
  got=$(dig @127.0.0.1 +time=2 +tries=2 +short "${@:2:$#-2}" 2>&1 || true)
  [ "$got" = "$want" ] && ok "$what -> $got" || bad "$what -> '$got', want '$want'"
}
# The README's first query: a UK client gets London.
expect "UDP app.geo.example from 81.2.69.0/24" -p "$udp" app.geo.example +subnet=81.2.69.0/24 192.0.2.1
expect "TCP app.geo.example from 81.2.69.0/24" -p "$tcp" +tcp app.geo.example +subnet=81.2.69.0/24 192.0.2.1
expect "UDP app.geo.example from 103.6.148.0/24" -p "$udp" app.geo.example +subnet=103.6.148.0/24 192.0.2.4
full=$(dig @127.0.0.1 -p "$udp" +time=2 +tries=2 app.geo.example +subnet=81.2.69.0/24 2>&1 || true)
grep -q 'flags: qr aa' <<<"$full" && ok "authoritative answer (aa)" || bad "no aa flag"
grep -q 'CLIENT-SUBNET: 81.2.69.0/24/18' <<<"$full" && ok "ECS scope /18 echoed" || bad "ECS scope"

# The runbook's check (deploy/README.md), run from the image itself on the host network.
explained=$("${PODMAN[@]}" run --rm --network host --read-only --user 65532 --cap-drop ALL "$IMAGE" \
  check --server "127.0.0.1:$udp" app.geo.example --client 81.2.69.0/24 2>&1 || true)
grep -qE '^answer +192\.0\.2\.1$' <<<"$explained" && ok "geodns check --server from the image" \
  || bad "geodns check --server: $explained"

# SIGTERM (podman stop): geodns drains and exits 0 within its 5 s grace, before podman's 10 s.
if "${PODMAN[@]}" stop --time 10 "$name" >/dev/null; then
  status=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$name")
  [ "$status" = 0 ] && ok "clean exit on SIGTERM" || bad "exit status $status on SIGTERM"
else
  bad "podman stop"
fi

if [ "$fail" -ne 0 ]; then
  echo "--- container log"
  "${PODMAN[@]}" logs "$name" 2>&1 | tail -n 50
fi
echo "smoke-image: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
