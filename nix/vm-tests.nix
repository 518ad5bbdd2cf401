# `make test-vm`: the VM-backed integration tests, in a NixOS test VM with
# nested KVM (the same role tests/vmhost/run plays on machines without Nix).
{ testers, pyro, envs }:
testers.runNixOSTest {
  name = "pyro-vm-tests";
  nodes.machine = { pkgs, ... }: {
    virtualisation.memorySize = 4096;
    virtualisation.cores = 2;
    virtualisation.qemu.options = [ "-cpu max" ];
    environment.systemPackages = [ pyro ];
    environment.variables.PYRO_HOME = "/var/lib/pyro";
  };
  testScript = ''
    machine.wait_for_unit("multi-user.target")
    machine.succeed("mkdir -p /var/lib/pyro/environments")
    ${builtins.concatStringsSep "\n" (map (e: ''
    machine.succeed("cp -r --sparse=always ${e} /var/lib/pyro/environments/$(python3 -c 'import json;print(json.load(open(\"${e}/environment.json\"))[\"name\"].replace(\":\",\"-\"))')")
    '') envs)}
    machine.succeed("pyro doctor")
    out = machine.succeed("pyro run debian:12 -- git --version")
    assert out.startswith("git version"), out
    machine.fail("pyro run debian:12-base -- sh -c 'exit 7'")
  '';
}
