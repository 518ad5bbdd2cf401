#!/usr/bin/env bash
# Builds a pyro guest root image from a recipe in guest/images/.
#
#   scripts/build-image.sh NAME AGENT_BINARY      (NAME: debian:12-base, debian:12, debian:12-build)
#
# Prints, as the only line on stdout, a directory holding:
#   rootfs.ext4       the Debian tree (debootstrap + mkfs.ext4 -d, no mounts), sparse,
#                     no journal (the guest mounts it read-only under an overlay),
#                     with the agent installed as /sbin/pyro-init
#   scratch.ext4      an empty sparse 8 GiB ext4 (label pyro-scratch), the template
#                     the host copies sparsely for each VM's writable disk
#   environment.json  name, version, packages, rootfs_sha256, rootfs_bytes, built_at
#   packages.txt      every installed package with its version
# Progress goes to stderr.
#
# Cache (outside the checkout): ${PYRO_BUILD_CACHE:-$HOME/.cache/pyro-build}
#   tree-<image>-<key>/   the customised debootstrap tree; key = hash of the resolved
#                         package list, this script and the debootstrap version
#   image-<image>-<key>/  the output; key = tree key + sha256 of the agent binary
#   debs/                 downloaded .deb files shared by all trees
# A changed agent only redoes mkfs; unchanged inputs print the cached path at once.
# The Debian mirror comes from this machine's apt configuration (override with
# PYRO_DEBIAN_MIRROR); it is not part of any key.
set -euo pipefail
export LC_ALL=C
export PATH=$PATH:/usr/sbin:/sbin

# Only the final path may reach stdout; everything else goes to stderr.
exec 3>&1 1>&2

prog=build-image
log() { echo "$prog: $*" >&2; }
die() { echo "$prog: error: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 NAME AGENT_BINARY  (NAME: debian:12-base | debian:12 | debian:12-build)"
name=$1
agent=$2
here=$(cd "$(dirname "$0")/.." && pwd)
script=$here/scripts/$(basename "$0")
recipes=$here/guest/images

case "$name" in
  *:*) ;;
  *) die "image name must look like debian:12 (got '$name')" ;;
esac
case "$name" in *[!a-z0-9.:-]*) die "bad image name '$name'" ;; esac
slug=${name//:/-}
recipe=$recipes/$slug.pkgs
[ -f "$recipe" ] || die "no recipe $recipe for image '$name'"
[ -f "$agent" ] && [ -r "$agent" ] || die "agent binary '$agent' is not a readable file"
[ "$(head -c 4 "$agent" | od -An -c | tr -d ' ')" = '177ELF' ] || die "agent binary '$agent' is not an ELF file"
agent=$(readlink -f "$agent")

suite=bookworm
variant=minbase
scratch_size=8G

# ---------------------------------------------------------------- recipe
# One package per line, '#' starts a comment, "include FILE" reads another
# recipe from the same directory first.
resolve_recipe() {
  local file=$1 depth=$2 line word rest
  [ "$depth" -lt 8 ] || die "recipe includes nest too deep at $file"
  [ -f "$file" ] || die "recipe $file not found"
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%%#*}
    read -r word rest <<<"$line" || true
    [ -n "${word:-}" ] || continue
    if [ "$word" = include ]; then
      [ -n "$rest" ] || die "$file: include without a file name"
      resolve_recipe "$(dirname "$file")/$rest" $((depth + 1))
    else
      [ -z "$rest" ] || die "$file: one package per line ('$line')"
      case "$word" in
        [a-z0-9]*) ;;
        *) die "$file: bad package name '$word'" ;;
      esac
      case "$word" in *[!a-z0-9+.-]*) die "$file: bad package name '$word'" ;; esac
      echo "$word"
    fi
  done <"$file"
}
packages=$(resolve_recipe "$recipe" 0 | awk '!seen[$0]++')

# ---------------------------------------------------------------- tools
need_install=""
for tool in debootstrap mkfs.ext4 debugfs e2fsck; do
  command -v "$tool" >/dev/null 2>&1 || need_install=1
done
if [ -n "$need_install" ]; then
  command -v apt-get >/dev/null 2>&1 || die "debootstrap and e2fsprogs are required (no apt-get to install them)"
  log "installing debootstrap and e2fsprogs"
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap e2fsprogs >&2
fi
for tool in flock sha256sum chroot; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

# ---------------------------------------------------------------- keys
cache=${PYRO_BUILD_CACHE:-$HOME/.cache/pyro-build}
debootstrap_version=$(debootstrap --version 2>/dev/null || dpkg-query -W -f='${Version}' debootstrap)
tree_key=$( { printf 'suite=%s\nvariant=%s\n%s\n' "$suite" "$variant" "$packages"; cat "$script"; echo "$debootstrap_version"; } | sha256sum | cut -c1-16)
agent_sha=$(sha256sum "$agent" | cut -d' ' -f1)
image_key=$(printf '%s\n%s\n' "$tree_key" "$agent_sha" | sha256sum | cut -c1-16)
tree=$cache/tree-$slug-$tree_key
out=$cache/image-$slug-$image_key

if [ -f "$out/environment.json" ]; then
  echo "$out" >&3
  exit 0
fi

# ---------------------------------------------------------------- lock + cleanup
mkdir -p "$cache"
exec 9>"$cache/.image-build.lock"
if ! flock -n 9; then
  log "waiting for another image build to finish"
  flock 9
fi
if [ -f "$out/environment.json" ]; then
  echo "$out" >&3
  exit 0
fi

# Unmount anything left mounted below a directory (debootstrap mounts /proc and
# /sys in its target while it runs; an interrupted run can leave them behind).
unmount_under() {
  local dir mp
  dir=$(readlink -f "$1")
  awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r |
    while IFS= read -r mp; do
      umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "warning: could not unmount $mp"
    done
}

work=""
cleanup() {
  local rc=$?
  if [ -n "$work" ] && [ -d "$work" ]; then
    unmount_under "$work"
    rm -rf --one-file-system "$work"
  fi
  [ "$rc" -eq 0 ] || log "failed (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# We hold the lock, so temp directories from this script are leftovers of a
# killed run.
for stale in "$cache"/tmp-tree-* "$cache"/tmp-image-*; do
  [ -d "$stale" ] || continue
  log "removing leftover $stale"
  unmount_under "$stale"
  rm -rf --one-file-system "$stale"
done

# ---------------------------------------------------------------- mirror
find_mirror() {
  local m=""
  if [ -n "${PYRO_DEBIAN_MIRROR:-}" ]; then
    echo "$PYRO_DEBIAN_MIRROR"
    return
  fi
  # deb822: first enabled "deb" stanza that is not the security suite.
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    m=$(awk '
      function flush() {
        if (!found && uri != "" && types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no" &&
            suites !~ /security/ && uri !~ /security/) { print uri; found = 1 }
        uri = ""; types = ""; suites = ""; enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      match($0, /^[A-Za-z][A-Za-z0-9-]*:/) {
        key = tolower(substr($0, 1, RLENGTH - 1)); val = substr($0, RLENGTH + 1)
        gsub(/^[ \t]+|[ \t]+$/, "", val)
        if (key == "uris") { split(val, a, /[ \t]+/); uri = a[1] }
        else if (key == "types") types = val
        else if (key == "suites") suites = val
        else if (key == "enabled") enabled = tolower(val)
      }
      END { flush() }' /etc/apt/sources.list.d/debian.sources)
  fi
  # One-line format: first "deb" line that is not the security suite.
  if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
    m=$(awk '
      /^[ \t]*deb[ \t]/ {
        i = 2
        if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($i !~ /security/ && $(i + 1) !~ /security/) { print $i; exit }
      }' /etc/apt/sources.list)
  fi
  case "$m" in
    http://* | https://* | ftp://* | file:/*) echo "$m" ;;
    "") die "no Debian mirror found in the apt configuration; set PYRO_DEBIAN_MIRROR" ;;
    *) die "unusable Debian mirror '$m' in the apt configuration; set PYRO_DEBIAN_MIRROR" ;;
  esac
}

# ---------------------------------------------------------------- tree
# Everything agent-independent happens here, once per tree key.
build_tree() {
  local root mirror include started
  started=$SECONDS
  mirror=$(find_mirror)
  work=$(mktemp -d "$cache/tmp-tree-$slug.XXXXXX")
  root=$work/root
  include=$(printf '%s\n' "$packages" | paste -sd, -)
  mkdir -p "$cache/debs"
  log "debootstrap $suite ($variant${include:+, +$(printf '%s\n' "$packages" | grep -c .) packages}) from $mirror"
  debootstrap --variant="$variant" ${include:+--include="$include"} --components=main \
    --cache-dir="$cache/debs" "$suite" "$root" "$mirror" >&2 || {
    [ -f "$root/debootstrap/debootstrap.log" ] && tail -n 20 "$root/debootstrap/debootstrap.log" >&2
    die "debootstrap failed"
  }
  unmount_under "$work"
  [ -x "$root/bin/sh" ] || die "debootstrap produced no /bin/sh"

  log "customising the tree"
  mkdir -p "$root"/{proc,sys,dev,run,tmp,workspace}
  chmod 0755 "$root" "$root"/{proc,sys,dev,run,workspace}
  chmod 1777 "$root/tmp"
  echo pyro >"$root/etc/hostname"
  cat >"$root/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	pyro
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF
  rm -f "$root/etc/resolv.conf"
  : >"$root/etc/resolv.conf" # the agent writes the real one when networking is on
  chmod 0644 "$root/etc/hostname" "$root/etc/hosts" "$root/etc/resolv.conf"
  [ -e "$root/etc/mtab" ] || [ -L "$root/etc/mtab" ] || ln -s ../proc/self/mounts "$root/etc/mtab"
  # No init system runs in the guest: package scripts must not start daemons.
  cat >"$root/usr/sbin/policy-rc.d" <<'EOF'
#!/bin/sh
# pyro: no init system in the guest; package scripts do not start daemons.
exit 101
EOF
  chmod 0755 "$root/usr/sbin/policy-rc.d"
  # Keep packages installed later inside a workspace as lean as the image.
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d" "$root/etc/apt/apt.conf.d"
  cat >"$root/etc/dpkg/dpkg.cfg.d/pyro-minimal" <<'EOF'
# pyro images carry no documentation, manual pages or translations.
# Delete this file to have dpkg install them again.
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
EOF
  cat >"$root/etc/apt/apt.conf.d/90pyro" <<'EOF'
// pyro: keep the workspace disk small.
APT::Keep-Downloaded-Packages "false";
Acquire::Languages "none";
EOF

  log "removing apt lists and caches, documentation, manual pages, translations, logs"
  find "$root/var/lib/apt/lists" "$root/var/cache/apt" -mindepth 1 ! -type d -delete
  mkdir -p "$root/var/lib/apt/lists/partial" "$root/var/cache/apt/archives/partial"
  if [ -d "$root/usr/share/doc" ]; then
    find "$root/usr/share/doc" -type f ! -name copyright -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  fi
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/lintian/* "$root"/usr/share/linda
  if [ -d "$root/usr/share/locale" ]; then
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  fi
  find "$root/var/log" -type f -delete
  rm -f "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
  rm -rf "$root/debootstrap"

  chroot "$root" dpkg-query -W -f='${Package}\t${Version}\n' >"$work/packages.txt"
  date -u +%Y-%m-%dT%H:%M:%SZ >"$work/built_at"
  unmount_under "$work"
  mv -T "$work" "$tree"
  work=""
  log "tree ready in $((SECONDS - started)) s: $(du -sh "$tree/root" | cut -f1), $(wc -l <"$tree/packages.txt") packages"
}

if [ -d "$tree/root" ] && [ -f "$tree/packages.txt" ]; then
  log "using cached tree $tree"
else
  rm -rf --one-file-system "$tree"
  build_tree
fi

# ---------------------------------------------------------------- image
json_str() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

started=$SECONDS
work=$(mktemp -d "$cache/tmp-image-$slug.XXXXXX")
root=$tree/root
# /sbin is a symlink into /usr on merged-usr trees; write through the real path.
if [ -L "$root/sbin" ]; then initdir=/$(readlink "$root/sbin"); else initdir=/sbin; fi
initdir=${initdir//\/\//\/}
[ -d "$root$initdir" ] || die "$initdir is not a directory in the tree"

# Size: allocated content + the agent + inode tables, plus 25 %, at least 256 MiB.
content=$(du -s -B1 "$root" | cut -f1)
files=$(find "$root" -xdev | wc -l)
inodes=$((files + files / 4 + 1024))
agent_bytes=$(stat -c %s "$agent")
need=$((content + agent_bytes + inodes * 256))
size_mib=$(((need + need / 4 + 1048575) / 1048576))
[ "$size_mib" -ge 256 ] || size_mib=256
log "mkfs.ext4 rootfs: $((content / 1048576)) MiB in $files files -> ${size_mib} MiB image, $inodes inodes"
mkfs.ext4 -q -F -t ext4 -b 4096 -I 256 -N "$inodes" -m 0 -O ^has_journal -L pyro-root \
  -E root_owner=0:0 -d "$root" "$work/rootfs.ext4" "${size_mib}M" >&2

log "installing the agent as /sbin/pyro-init"
cp "$agent" "$work/agent"
cat >"$work/debugfs.cmd" <<EOF
cd $initdir
write agent pyro-init
sif pyro-init mode 0100755
sif pyro-init uid 0
sif pyro-init gid 0
EOF
(cd "$work" && debugfs -w -f debugfs.cmd rootfs.ext4 >/dev/null 2>"$work/debugfs.err")
stat_out=$(debugfs -R "stat $initdir/pyro-init" "$work/rootfs.ext4" 2>/dev/null || true)
if ! grep -q "Mode:  0755" <<<"$stat_out" || ! grep -Eq "User: +0 +Group: +0 " <<<"$stat_out" ||
  ! grep -Eq "Size: $agent_bytes\b" <<<"$stat_out"; then
  cat "$work/debugfs.err" >&2
  die "installing the agent with debugfs failed"
fi
rm -f "$work/agent" "$work/debugfs.cmd" "$work/debugfs.err"
e2fsck -fn "$work/rootfs.ext4" >"$work/fsck.log" 2>&1 || { cat "$work/fsck.log" >&2; die "e2fsck found errors in rootfs.ext4"; }
rm -f "$work/fsck.log"

log "mkfs.ext4 scratch template ($scratch_size, sparse)"
# Lazy init leaves the inode tables and the journal as holes, which read as
# zeros (and stay holes in the host's sparse copies). Mark the inode tables
# zeroed so the guest kernel's ext4lazyinit thread does not write 128 MiB of
# zeros into every workspace disk. (Zeroing them in mke2fs instead allocates
# the space here: measured 132 MiB.)
mkfs.ext4 -q -F -t ext4 -b 4096 -I 256 -m 0 -L pyro-scratch \
  -E lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0 "$work/scratch.ext4" "$scratch_size" >&2
dumpe2fs "$work/scratch.ext4" 2>/dev/null | awk '
  /^Group [0-9]+:/ {
    if ($0 ~ /ITABLE_ZEROED/) next
    g = $2; sub(/:$/, "", g); f = 4
    if ($0 ~ /INODE_UNINIT/) f += 1
    if ($0 ~ /BLOCK_UNINIT/) f += 2
    printf "set_bg %s flags %d\nset_bg %s checksum calc\n", g, f, g
  }' >"$work/scratch.cmd"
debugfs -w -f "$work/scratch.cmd" "$work/scratch.ext4" >/dev/null 2>&1
groups=$(dumpe2fs "$work/scratch.ext4" 2>/dev/null | grep -c '^Group [0-9]*:')
zeroed=$(dumpe2fs "$work/scratch.ext4" 2>/dev/null | grep -c '^Group [0-9]*:.*ITABLE_ZEROED')
[ "$groups" -gt 0 ] && [ "$groups" = "$zeroed" ] || die "marking scratch inode tables zeroed failed ($zeroed of $groups groups)"
e2fsck -fn "$work/scratch.ext4" >"$work/fsck.log" 2>&1 || { cat "$work/fsck.log" >&2; die "e2fsck found errors in scratch.ext4"; }
rm -f "$work/scratch.cmd" "$work/fsck.log"

rootfs_sha=$(sha256sum "$work/rootfs.ext4" | cut -d' ' -f1)
rootfs_bytes=$(stat -c %s "$work/rootfs.ext4")
tree_date=$(cat "$tree/built_at")
version=$(printf '%s' "$tree_date" | cut -c1-10 | tr -d -)-$tree_key
cp "$tree/packages.txt" "$work/packages.txt"
{
  printf '{\n'
  printf '  "name": %s,\n' "$(json_str "$name")"
  printf '  "version": %s,\n' "$(json_str "$version")"
  printf '  "distribution": "debian",\n'
  printf '  "distribution_version": "12",\n'
  printf '  "packages": ['
  sep=""
  while IFS= read -r p; do
    [ -n "$p" ] || continue
    printf '%s%s' "$sep" "$(json_str "$p")"
    sep=", "
  done <<<"$packages"
  printf '],\n'
  printf '  "rootfs_sha256": %s,\n' "$(json_str "$rootfs_sha")"
  printf '  "rootfs_bytes": %s,\n' "$rootfs_bytes"
  printf '  "agent_sha256": %s,\n' "$(json_str "$agent_sha")"
  printf '  "tree_built_at": %s,\n' "$(json_str "$tree_date")"
  printf '  "built_at": %s\n' "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")"
  printf '}\n'
} >"$work/environment.json"
chmod 0755 "$work"
chmod 0644 "$work"/*
rm -rf --one-file-system "$out"
mv -T "$work" "$out"
work=""
log "image ready in $((SECONDS - started)) s: rootfs $(du -h "$out/rootfs.ext4" | cut -f1) allocated of $((rootfs_bytes / 1048576)) MiB, scratch $(du -h "$out/scratch.ext4" | cut -f1) allocated"
echo "$out" >&3
