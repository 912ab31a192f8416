#!/usr/bin/env bash
# Makes the local base image switchboard/debian:bookworm from Debian's own mirror, for hosts
# that cannot pull from Docker Hub: debootstraps a minbase Debian 12 rootfs into a temporary
# directory and `docker import`s it. Idempotent: does nothing when the image already exists.
# Needs root (or sudo) for debootstrap; installs debootstrap with apt-get when it is missing.
# Overrides: SB_BASE_IMAGE (switchboard/debian:bookworm),
#            SB_DEBIAN_MIRROR (the first Debian mirror apt on this host uses, else deb.debian.org).
set -euo pipefail

image=${SB_BASE_IMAGE:-switchboard/debian:bookworm}
suite=bookworm

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "make-base-image: $image already exists"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "make-base-image: need root or sudo for debootstrap" >&2; exit 1; }
  sudo=(sudo)
fi

# The mirror apt already uses here is known to be reachable; Docker Hub may not be.
host_mirror() {
  local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  local f
  for f in "${files[@]}"; do
    [ -r "$f" ] || continue
    # deb822 "URIs:" lines and one-line "deb URL suite ..." entries; the first plain Debian
    # archive (not -security, not a third-party repository) wins.
    sed -n -e 's/^URIs:[[:space:]]*//p' -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' "$f"
  done | tr ' ' '\n' | grep -E '^https?://[^ ]*/debian/?$' | head -n1
}
mirror=${SB_DEBIAN_MIRROR:-$(host_mirror || true)}
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}
security=${mirror%/debian}/debian-security

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "make-base-image: installing debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" apt-get install -y -q --no-install-recommends debootstrap
fi

# Not under /tmp: it may be mounted nodev, and debootstrap creates device nodes.
work=$(mktemp -d /var/tmp/sb-rootfs.XXXXXX)
cleanup() {
  # debootstrap mounts /proc and /sys inside the target; never rm -rf through a mount.
  local m
  for m in $(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r); do
    "${sudo[@]}" umount -l "$m" 2>/dev/null || true
  done
  "${sudo[@]}" rm -rf --one-file-system "$work"
}
trap cleanup EXIT

rootfs=$work/rootfs
echo "make-base-image: debootstrap --variant=minbase $suite from $mirror (a few minutes)"
"${sudo[@]}" debootstrap --variant=minbase "$suite" "$rootfs" "$mirror"

# Security and point-release updates, like a stock Debian image; no package lists or caches.
"${sudo[@]}" tee "$rootfs/etc/apt/sources.list" >/dev/null <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
EOF
# Images do not run man-db triggers or keep docs; Debian's own images use the same switches.
"${sudo[@]}" tee "$rootfs/etc/apt/apt.conf.d/90switchboard" >/dev/null <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
"${sudo[@]}" rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
  "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log

echo "make-base-image: importing as $image"
"${sudo[@]}" tar -C "$rootfs" --numeric-owner -c . |
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["bash"]' \
    --message "debootstrap --variant=minbase $suite $mirror" \
    - "$image"
docker image ls "$image"
