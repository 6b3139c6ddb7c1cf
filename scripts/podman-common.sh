# shellcheck shell=bash disable=SC2034  # sets variables for the scripts that source it
# Sourced by scripts/build-image.sh and scripts/smoke-image.sh: installs podman when it is
# missing, points it at scripts/containers.conf and picks a storage driver. Sets:
#   PODMAN        the podman command line to use, as an array
#   IMAGE_NAME    localhost/geodns
#   VERSION       the crate version (Cargo.toml), the image's only tag
#   IMAGE         $IMAGE_NAME:$VERSION
#   TARGET_DIR    cargo's target directory (CARGO_TARGET_DIR, else target/)
# Run from the repository root.

# apt-get install what is missing (Debian and derivatives), as root.
apt_install() {
  [ $# -gt 0 ] || return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: $* (install them, e.g. apt-get install $*)" >&2
    return 1
  fi
  echo "installing: $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

podman_setup() {
  local need=()
  command -v podman >/dev/null 2>&1 || need+=(podman)
  command -v runc >/dev/null 2>&1 || need+=(runc)
  apt_install "${need[@]}"

  # The caller's containers.conf wins; otherwise the project's (runc, explicit ulimits).
  : "${CONTAINERS_CONF:=$PWD/scripts/containers.conf}"
  export CONTAINERS_CONF

  # overlay (podman's default) works on ext4 and xfs; where the kernel refuses it (some
  # overlay-on-overlay container hosts), fall back to vfs, which always works but copies every
  # layer in full. GEODNS_STORAGE_DRIVER forces one. vfs gets its own storage root so that it
  # never meets an overlay store.
  PODMAN=(podman)
  if [ -n "${GEODNS_STORAGE_DRIVER:-}" ]; then
    PODMAN+=(--storage-driver "$GEODNS_STORAGE_DRIVER")
  elif ! podman info >/dev/null 2>&1; then
    echo "podman's default storage does not work here; using vfs" >&2
    GEODNS_STORAGE_DRIVER=vfs
    PODMAN+=(--storage-driver vfs)
  fi
  if [ "${GEODNS_STORAGE_DRIVER:-}" = vfs ] && [ "$(id -u)" -eq 0 ]; then
    PODMAN+=(--root /var/lib/containers/storage-vfs)
  fi
  export GEODNS_STORAGE_DRIVER
  "${PODMAN[@]}" info >/dev/null

  # `cargo pkgid` prints e.g. path+file:///src/geodns#0.1.0 or ...#geodns@0.1.0.
  local id
  id=$(cargo pkgid --manifest-path Cargo.toml)
  VERSION=${id##*#}
  VERSION=${VERSION##*@}
  IMAGE_NAME=localhost/geodns
  IMAGE=$IMAGE_NAME:$VERSION
  TARGET_DIR=${CARGO_TARGET_DIR:-target}
}
