{
  description = "pyro: disposable microVM workspaces for chat coding agents";

  # Every step here mirrors a Makefile target (which is what runs on
  # machines without Nix): packages.pyro = `make build`, packages.kernel =
  # `make kernel`, packages.env-* = `make envs`, checks.vm-tests = `make test-vm`.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
      pyro = pkgs.callPackage ./nix/pyro.nix { src = self; };
      kernel = pkgs.callPackage ./nix/kernel.nix { src = self; };
      mkEnv = name: pkgs.callPackage ./nix/image.nix { inherit name pyro kernel; src = self; };
    in
    {
      packages.${system} = {
        default = pyro;
        inherit pyro kernel;
        env-debian-12-base = mkEnv "debian:12-base";
        env-debian-12 = mkEnv "debian:12";
        env-debian-12-build = mkEnv "debian:12-build";
      };

      checks.${system}.vm-tests = pkgs.callPackage ./nix/vm-tests.nix {
        inherit pyro;
        envs = [ self.packages.${system}.env-debian-12-base self.packages.${system}.env-debian-12 ];
      };

      devShells.${system}.default = pkgs.mkShell {
        packages = with pkgs; [ cargo rustc clippy rustfmt pkgsStatic.stdenv.cc e2fsprogs debootstrap qemu busybox python3 ];
      };
    };
}
