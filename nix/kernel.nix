# `make kernel` / scripts/build-kernel.sh: tinyconfig + the option fragment
# in guest/kernel/pyro-guest.config, ELF vmlinux, from nixpkgs' 6.12 source.
{ stdenv, linux_6_12, bc, bison, flex, elfutils, perl, openssl, src }:
stdenv.mkDerivation {
  pname = "pyro-guest-kernel";
  version = linux_6_12.version;
  src = linux_6_12.src;
  nativeBuildInputs = [ bc bison flex elfutils perl openssl ];
  configurePhase = ''
    runHook preConfigure
    make ARCH=x86_64 tinyconfig
    ./scripts/kconfig/merge_config.sh -m .config ${src}/guest/kernel/pyro-guest.config
    make ARCH=x86_64 olddefconfig
    runHook postConfigure
  '';
  buildPhase = ''
    make ARCH=x86_64 -j$NIX_BUILD_CORES vmlinux
  '';
  installPhase = ''
    mkdir -p $out
    cp vmlinux $out/vmlinux
    cp .config $out/config
  '';
}
