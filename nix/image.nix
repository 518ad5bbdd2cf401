# `make envs` / scripts/build-image.sh: a Debian bookworm root image with
# pyro-init, an empty scratch template, and environment.json, laid out as
# pyro's environment store expects. The Nix sandbox has no network, so the
# .debs come from nixpkgs' fixed-output Debian closure (vmTools) instead of
# debootstrap's live download; the tree is unpacked and its maintainer
# scripts run inside vmTools' build VM, then packed with mkfs.ext4 -d.
{ lib, vmTools, runCommand, e2fsprogs, python3, name, pyro, kernel, src }:
let
  slug = builtins.replaceStrings [ ":" ] [ "-" ] name;
  readPkgs = file:
    let
      lines = lib.splitString "\n" (builtins.readFile file);
      clean = map (l: lib.trim (builtins.head (lib.splitString "#" l))) lines;
      includes = map (l: lib.removePrefix "include " l) (builtins.filter (lib.hasPrefix "include ") clean);
      pkgs = builtins.filter (l: l != "" && !(lib.hasPrefix "include " l)) clean;
    in
    lib.concatMap (f: readPkgs "${src}/guest/images/${f}") includes ++ pkgs;
  packages = readPkgs "${src}/guest/images/${slug}.pkgs";
  distro = vmTools.debDistros.debian12x86_64;
  tree = vmTools.makeImageFromDebDist {
    inherit (distro) name fullName urlPrefix packagesLists;
    packages = distro.packages ++ packages;
    size = 4096;
  };
in
runCommand "pyro-env-${slug}" { nativeBuildInputs = [ e2fsprogs python3 ]; } ''
  mkdir -p $out root
  debugfs -R "rdump / root" ${tree}/disk-image.qcow2 2>/dev/null || true
  install -D -m 0755 ${pyro}/bin/pyro-guest root/sbin/pyro-init
  mkdir -p root/workspace root/proc root/sys root/dev root/run root/tmp
  echo pyro > root/etc/hostname
  size=$(( $(du -sm root | cut -f1) * 5 / 4 + 64 ))
  mkfs.ext4 -q -F -O ^has_journal -d root $out/rootfs.ext4 ''${size}M
  mkfs.ext4 -q -F -L pyro-scratch -E lazy_itable_init=1,lazy_journal_init=1 $out/scratch.ext4 8G
  cp ${kernel}/vmlinux $out/vmlinux
  python3 - <<PY
  import hashlib, json
  h = hashlib.sha256(open("$out/rootfs.ext4", "rb").read()).hexdigest()
  json.dump({"name": "${name}", "version": "1.0.0", "distribution": "debian", "distribution_version": "12",
             "packages": ${builtins.toJSON packages}, "rootfs_sha256": h}, open("$out/environment.json", "w"))
  PY
''
