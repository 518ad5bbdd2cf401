#!/usr/bin/env bash
# Builds the guest kernel (ELF vmlinux) from Debian's linux-source-6.12:
# `make tinyconfig` plus the option fragment kept in guest/kernel/.
# The result is cached outside the checkout, keyed by the fragment's hash
# and the source tarball's version, so a second build is a no-op.
# Prints the path of the cached vmlinux on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
fragment=$here/guest/kernel/pyro-guest.config
src_tar=/usr/src/linux-source-6.12.tar.xz
cache=${PYRO_BUILD_CACHE:-$HOME/.cache/pyro-build}
[ -f "$src_tar" ] || { echo "build-kernel: $src_tar missing (apt-get install linux-source-6.12)" >&2; exit 1; }
key=$( (cat "$fragment" "$0"; dpkg-query -W -f='${Version}' linux-source-6.12) | sha256sum | cut -c1-16)
out=$cache/kernel-$key
if [ -f "$out/vmlinux" ]; then echo "$out/vmlinux"; exit 0; fi
work=$(mktemp -d "$cache/kernel-build.XXXXXX" 2>/dev/null || { mkdir -p "$cache"; mktemp -d "$cache/kernel-build.XXXXXX"; })
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
echo "build-kernel: unpacking linux-source-6.12 into $work" >&2
tar -xJf "$src_tar" -C "$work"
cd "$work"/linux-source-6.12
echo "build-kernel: configuring (tinyconfig + $(basename "$fragment"))" >&2
make -s ARCH=x86_64 tinyconfig >&2
./scripts/kconfig/merge_config.sh -m .config "$fragment" >/dev/null
make -s ARCH=x86_64 olddefconfig >&2
# Fail loudly when an option we rely on did not survive dependency resolution.
missing=""
while IFS= read -r line; do
  case "$line" in CONFIG_*=y) grep -qx "$line" .config || missing="$missing ${line%=y}";; esac
done < "$fragment"
if [ -n "$missing" ]; then echo "build-kernel: options dropped by Kconfig:$missing" >&2; fi
echo "build-kernel: building vmlinux with $(nproc) jobs" >&2
make -s ARCH=x86_64 -j"$(nproc)" vmlinux >&2
mkdir -p "$out.tmp"
cp vmlinux "$out.tmp/vmlinux"
cp .config "$out.tmp/config"
rm -rf "$out"; mv "$out.tmp" "$out"
echo "build-kernel: done in $(( $(date +%s) - start )) s, $(stat -c %s "$out/vmlinux") bytes" >&2
echo "$out/vmlinux"
