#!/usr/bin/env bash
# Builds Verdant's container images, verdant-operator, verdant-launcher and verdant-broker (and
# verdant-pause, the pod sandbox of nodes with no registry), as one OCI archive each, with no
# container engine: static binaries from one Cargo build, put FROM scratch by buildah. The same commit gives the same digests: every timestamp is the
# commit's, files are owned by root (or the nonroot user) with fixed modes, and layers are
# compressed by the same code every time. See images/README.md.
#
#   images/build.sh [OUTPUT_DIR]     (default target/images; needs root for buildah's storage)
#
# Writes OUTPUT_DIR/verdant-<name>.oci.tar and OUTPUT_DIR/digests.txt.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-target/images}

started=$SECONDS
step() { printf '=== [%s +%ds] %s\n' "$(date +%H:%M:%S)" "$((SECONDS - started))" "$*"; }
fail() { echo "images/build.sh: $*" >&2; exit 1; }
# need COMMAND PACKAGE: fails naming the Debian package that provides a missing command.
need() { command -v "$1" >/dev/null || fail "needs $1 on PATH (Debian package: $2)"; }

cargo=${CARGO:-cargo}
command -v "$cargo" >/dev/null || fail "needs cargo on PATH (Rust, by rustup)"
need git git
need buildah buildah
need skopeo skopeo
need ldd libc-bin
need strip binutils
need gcc gcc
novnc=broker/web/node_modules/@novnc/novnc
[ -f "$novnc/core/rfb.js" ] || fail "needs noVNC in $novnc: run \`npm ci\` in broker/web"

# What the labels say, from the workspace manifest and the commit.
field() { sed -n "s/^$1 = \"\(.*\)\"\$/\1/p" "$2" | head -n 1; }
version=$(field version Cargo.toml)
license=$(field license Cargo.toml)
source=$(field repository Cargo.toml)
if [ -z "$version" ] || [ -z "$license" ] || [ -z "$source" ]; then
  fail "Cargo.toml's [workspace.package] lacks version, license or repository"
fi
revision=$(git rev-parse HEAD 2>/dev/null) ||
  fail "needs a git checkout: the commit names the images' revision and dates them"
# A build from uncommitted changes says so, rather than claiming the commit's contents.
[ -z "$(git status --porcelain)" ] || revision="$revision-dirty"
# SOURCE_DATE_EPOCH (reproducible-builds.org) wins; else the commit's time, never the clock's.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
registry=ghcr.io/verdant-vdi

# The static release build (images/static.sh); the whole workspace is selected so features
# resolve as in every other build (see tests/src/bins.rs). Symbols are stripped from the
# images' copies, not by the profile, so this build shares its files with CI's benchmarks.
step "cargo build --release --workspace --bins (static, x86_64-unknown-linux-gnu)"
# shellcheck source=images/static.sh
source "$root/images/static.sh"
verdant_static_env
target=$verdant_static_target
"$cargo" build --release --locked --workspace --bins --target "$target"
bins=${CARGO_TARGET_DIR:-target}/$target/release

mkdir -p "$out"
work=$(mktemp -d "$out/.work.XXXXXX")
# buildah keeps its images and containers in a private store, so that a build neither sees
# nor leaves anything in the machine's; vfs needs no kernel overlay support.
bah() { buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"; }
cleanup() {
  bah rm --all >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# stage NAME: the image's root file system, in $work/NAME: the binary, the users, /tmp.
stage() {
  local name=$1 rootfs=$work/$1
  mkdir -p "$rootfs"/{usr/bin,etc,tmp,root,home}
  if [ "$name" = pause ]; then
    # Static (position-independent, as the Rust binaries are) and stripped by the compiler;
    # the same source and compiler give the same bytes.
    gcc -static-pie -fPIE -Os -s -DVERDANT_VERSION="\"$version\"" -o "$rootfs/usr/bin/verdant-pause" \
      "$root/images/pause/pause.c"
  else
    install -m 0755 "$bins/verdant-$name" "$rootfs/usr/bin/verdant-$name"
    strip --strip-all "$rootfs/usr/bin/verdant-$name"
  fi
  if [ "$name" = launcher ]; then
    # The hardened mode's device plugin runs on the same nodes as the launcher: one image
    # to pull there, not two.
    install -m 0755 "$bins/verdant-kvm-plugin" "$rootfs/usr/bin/verdant-kvm-plugin"
    strip --strip-all "$rootfs/usr/bin/verdant-kvm-plugin"
  fi
  # Names for the two users an image runs as (65532 is distroless's nonroot), and the
  # resolver's order: static glibc reads /etc/hosts and /etc/resolv.conf itself (Kubernetes
  # mounts both), with no NSS modules to load.
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$rootfs/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$rootfs/etc/group"
  printf '%s\n' 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
  chmod 0755 "$rootfs" "$rootfs/etc" "$rootfs/home"
  chmod 0644 "$rootfs"/etc/*
  chmod 1777 "$rootfs/tmp"
  chmod 0700 "$rootfs/root"
  if [ "$name" = broker ]; then
    mkdir -p "$rootfs/usr/share/verdant"
    cp -R "$novnc" "$rootfs/usr/share/verdant/novnc"
  fi
  # Modes as no particular machine's umask left them.
  chmod -R u+rwX,go+rX,go-w "$rootfs/usr"
}

# description NAME: the image's one-line description, from its crate's manifest.
description() {
  if [ "$1" = pause ]; then
    echo "The pod sandbox process for nodes that load images from archives (verdant-dev, end-to-end tests)"
  else
    field description "$1/Cargo.toml"
  fi
}

# smoke NAME [BINARY]: the staged binary (default verdant-NAME) is static and runs with
# nothing else around it.
smoke() {
  local name=$1 rootfs=$work/$1 bin=/usr/bin/${2:-verdant-$1}
  ldd "$rootfs$bin" 2>&1 | grep -Eq 'not a dynamic executable|statically linked' ||
    fail "$bin is not static: $(ldd "$rootfs$bin" 2>&1)"
  if [ "$(id -u)" = 0 ]; then
    chroot "$rootfs" "$bin" --version >/dev/null ||
      fail "$bin --version fails in its own root file system"
  else
    env -i "$rootfs$bin" --version >/dev/null || fail "$bin --version fails"
  fi
}

# image NAME USER PORTS...: commits the staged root file system as OUT/verdant-NAME.oci.tar.
image() {
  local name=$1 user=$2 ports=("${@:3}")
  local title=verdant-$name archive=$out/verdant-$name.oci.tar
  local ref=$registry/$title:$version
  step "$ref"
  stage "$name"
  smoke "$name"
  if [ "$name" = launcher ]; then smoke launcher verdant-kvm-plugin; fi
  local c
  c=$(bah from --quiet scratch)
  bah copy --quiet --chown 0:0 "$c" "$work/$name/" /
  mkdir "$work/$name.home"
  bah copy --quiet --chown 65532:65532 "$c" "$work/$name.home/" /home/nonroot
  local config=(--os linux --arch amd64 --user "$user" --workingdir /
    --entrypoint "[\"/usr/bin/$title\"]" --created-by "images/build.sh"
    --label "org.opencontainers.image.title=$title"
    --label "org.opencontainers.image.description=$(description "$name")"
    --label "org.opencontainers.image.version=$version"
    --label "org.opencontainers.image.revision=$revision"
    --label "org.opencontainers.image.source=$source"
    --label "org.opencontainers.image.licenses=$license"
    --label "org.opencontainers.image.created=$created")
  for port in "${ports[@]}"; do config+=(--port "$port"); done
  bah config "${config[@]}" "$c"
  rm -f "$archive"
  # --timestamp sets the image's and every file's time; compressed layers are what a registry
  # stores, so the digest here is the one a push gives; no builder label, which would change
  # the digest with buildah's version.
  bah commit --quiet --format oci --timestamp "$epoch" --disable-compression=false \
    --identity-label=false "$c" "oci-archive:$archive:$ref" >/dev/null
  bah rm "$c" >/dev/null
}

# The operator and the broker run as nonroot. The launcher runs as root: its pod is privileged
# and opens /dev/kvm and the disk files mounted into it, whose owners vary by node.
image operator 65532:65532 8080/tcp
image launcher 0:0 8080/tcp 5900/tcp
image broker 65532:65532 8443/tcp
# The pod sandbox image of nodes with no registry to pull registry.k8s.io/pause from: the
# end-to-end tests' node and verdant-dev load it into containerd with the others. It runs as
# upstream's does, as 65535.
image pause 65535:65535

step "digests (also in $out/digests.txt)"
{
  echo "# archive image digest archive-bytes rootfs-bytes"
  for name in operator launcher broker pause; do
    archive=$out/verdant-$name.oci.tar
    digest=$(skopeo inspect --format '{{.Digest}}' "oci-archive:$archive")
    archive_bytes=$(stat -c %s "$archive")
    rootfs_bytes=$(find "$work/$name" "$work/$name.home" -type f -printf '%s\n' |
      awk '{ s += $1 } END { print s + 0 }')
    echo "verdant-$name.oci.tar $registry/verdant-$name:$version $digest $archive_bytes $rootfs_bytes"
  done
} >"$out/digests.txt"
awk '!/^#/ { printf "%-45s %s  %5.1f MiB archive, %5.1f MiB unpacked\n",
  $2, $3, $4 / 1048576, $5 / 1048576 }' "$out/digests.txt"
step "done: $out"
