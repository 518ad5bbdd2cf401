# `make build`: static musl binaries `pyro` and `pyro-guest`.
{ pkgsStatic, src }:
pkgsStatic.rustPlatform.buildRustPackage {
  pname = "pyro";
  version = "0.1.0";
  inherit src;
  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = [ "--workspace" ];
  # Unit tests run in `make test-unit`; VM tests need KVM (checks.vm-tests).
  doCheck = false;
  meta.mainProgram = "pyro";
}
