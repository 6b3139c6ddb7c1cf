#!/usr/bin/env bash
# Builds the geodns image here, with no base image to pull: FROM scratch, holding the release
# binary, exactly the shared libraries it loads (from ldd) and the dynamic loader, a CA bundle,
# /etc/passwd and /etc/group with `nonroot` (65532), the shipped GeoIP database and the container
# config (config/container.yaml). The same layout as the Containerfile's distroless image.
#
#   bash scripts/build-image.sh        # -> localhost/geodns:<crate version>
#                                      #    and target/image/geodns-<crate version>.oci.tar
#
# Installs podman (Debian) when it is missing; runs podman with scripts/containers.conf.
# Reuses the release build of scripts/smoke-example.sh (same `cargo build --release --locked`,
# same target directory). The image is reproducible: file times are set to the last commit's.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/podman-common.sh

need=()
command -v ldd >/dev/null 2>&1 || need+=(libc-bin)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
apt_install "${need[@]}"
podman_setup

cargo build --release --locked
bin=$TARGET_DIR/release/geodns
out=$TARGET_DIR/image
root=$out/context/rootfs
rm -rf "$out/context"
mkdir -p "$root"

# The binary and what the dynamic loader will map for it: every library ldd resolves, at the
# path it resolves to, and the loader itself (ldd's line without "=>", the binary's PT_INTERP).
install -D -m 0755 "$bin" "$root/usr/bin/geodns"
if ldd_out=$(ldd "$bin" 2>&1); then
  while read -r first arrow path _; do
    case "$first" in linux-vdso.so.* | linux-gate.so.*) continue ;; esac
    if [ "$arrow" = "=>" ]; then
      [ "${path:0:1}" = / ] || { echo "ldd: $first not found" >&2; exit 1; }
      lib=$path
    else
      lib=$first
    fi
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    echo "library: $lib"
  done <<<"$ldd_out"
elif ! grep -q "not a dynamic executable" <<<"$ldd_out"; then
  echo "ldd $bin: $ldd_out" >&2
  exit 1
fi

# TLS roots for HTTPS health checks and the Kubernetes API (Debian's bundle, where rustls looks).
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
# The user the image runs as, as in distroless: root, and nonroot with uid/gid 65532.
mkdir -p "$root/etc" "$root/home" "$root/tmp" "$out/context/home"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
# Name lookups (Kubernetes API hosts, HTTP check hosts): /etc/hosts, then DNS. glibc 2.34 and
# later have both built in, so no NSS module is needed.
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
chmod 1777 "$root/tmp"
# The GeoIP database with its licence notices, and the example config.
for f in geo-whois-asn-country.mmdb LICENSE-geo-whois-asn-country LICENSE-country-centroids; do
  install -D -m 0644 "geoip/$f" "$root/usr/share/geodns/$f"
done
install -D -m 0644 config/container.yaml "$root/etc/geodns/config.yaml"

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || revision="$revision-dirty"
epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

cat >"$out/context/Containerfile" <<EOF
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 home/ /home/nonroot/
LABEL org.opencontainers.image.title="geodns" \\
      org.opencontainers.image.description="GeoDNS authoritative server and health-checking load balancer" \\
      org.opencontainers.image.version="$VERSION" \\
      org.opencontainers.image.licenses="Apache-2.0" \\
      org.opencontainers.image.revision="$revision" \\
      org.opencontainers.image.created="$created"
USER 65532:65532
EXPOSE 53/udp 53/tcp 9153/tcp
ENTRYPOINT ["/usr/bin/geodns"]
CMD ["serve", "--config", "/etc/geodns/config.yaml"]
EOF

# No intermediate layer images (each step is a cheap copy); the image this tag named before, if
# another, is removed once nothing uses it, so rebuilds leave nothing behind.
previous=$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
"${PODMAN[@]}" build --quiet --layers=false --format oci --timestamp "$epoch" --tag "$IMAGE" \
  --file "$out/context/Containerfile" "$out/context" >/dev/null
if [ -n "$previous" ] && [ "$previous" != "$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE")" ]; then
  "${PODMAN[@]}" rmi "$previous" >/dev/null 2>&1 || true
fi
archive=$out/geodns-$VERSION.oci.tar
rm -f "$archive"
"${PODMAN[@]}" save --quiet --format oci-archive --output "$archive" "$IMAGE"

echo "image:   $IMAGE ($("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE" | cut -c1-12)," \
  "$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.1f MB", $1 / 1e6}'))"
echo "archive: $archive ($(sha256sum "$archive" | cut -c1-16)...)"
echo "storage: $("${PODMAN[@]}" info --format '{{.Store.GraphDriverName}}'), runtime: $("${PODMAN[@]}" info --format '{{.Host.OCIRuntime.Name}}')"
