"""`pyro host ...` against config files in a temporary HOME, and against
the real `claude` and `codex` CLIs from npm."""

import json
import os
import shutil
import stat
import subprocess

import pytest

from conftest import npm_bin, pyro_bin


def pyro(home, *args, path=None, exe=None):
    env = dict(os.environ, HOME=str(home), PATH=path or str(home / "empty-bin"))
    (home / "empty-bin").mkdir(exist_ok=True)
    return subprocess.run(
        [exe or pyro_bin(), "host", *args], capture_output=True, text=True,
        env=env, timeout=300, stdin=subprocess.DEVNULL, cwd=str(home),
    )


def pyro_json(home, *args, **kw):
    p = pyro(home, *args, "--json", **kw)
    return p.returncode, json.loads(p.stdout)


def real_pyro():
    return os.path.realpath(pyro_bin())


def backups(path):
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(path.name + ".pyro-backup-"))


def stale_copy(tmp_path):
    """A pyro binary that will be deleted after registering itself."""
    d = tmp_path / "old-install"
    d.mkdir()
    copy = d / "pyro"
    shutil.copy2(pyro_bin(), copy)
    return copy


def host_status(home, host, **kw):
    code, report = pyro_json(home, "doctor", **kw)
    (entry,) = [h for h in report["hosts"] if h["host"] == host]
    return code, entry


# ---- config files only (the host CLIs are not on PATH) ----------------------

def test_claude_config_file_is_edited_in_place(home):
    cfg = home / ".claude.json"
    seed = {"numStartups": 7, "projects": {"/src/app": {"allowedTools": ["Bash"]}},
            "mcpServers": {"other": {"type": "stdio", "command": "other-server", "args": ["-v"]}}}
    cfg.write_text(json.dumps(seed))
    cfg.chmod(0o600)

    code, out = pyro_json(home, "connect", "claude-code")
    assert code == 0, out
    assert (out["action"], out["method"]) == ("added", "config-file")
    data = json.loads(cfg.read_text())
    assert data["numStartups"] == 7 and data["projects"] == seed["projects"]
    assert data["mcpServers"]["other"] == seed["mcpServers"]["other"]
    assert data["mcpServers"]["pyro"] == {
        "type": "stdio", "command": real_pyro(), "args": ["mcp", "serve"], "env": {}}
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    (b,) = backups(cfg)
    assert json.loads(b.read_text()) == seed
    assert out["backup"] == str(b)

    # Idempotent: nothing changes, no new backup.
    before = cfg.read_text()
    code, out = pyro_json(home, "connect", "claude-code")
    assert (code, out["action"]) == (0, "unchanged")
    assert cfg.read_text() == before and len(backups(cfg)) == 1

    code, entry = host_status(home, "claude-code")
    assert code == 0
    assert (entry["status"], entry["registered"], entry["command_valid"]) == ("ok", True, True)
    assert entry["cli"]["found"] is False


def test_codex_config_toml_keeps_other_tables(home):
    cfg = home / ".codex" / "config.toml"
    cfg.parent.mkdir()
    seed = ('model = "o3"\n\n[mcp_servers.docs]\ncommand = "docs"\nargs = ["--x"]\n\n'
            '[profiles.fast]\nmodel = "mini"\n')
    cfg.write_text(seed)

    code, out = pyro_json(home, "connect", "codex", "--profile", "vm-run")
    assert code == 0, out
    assert (out["action"], out["method"]) == ("added", "config-file")
    text = cfg.read_text()
    assert text.startswith(seed.rstrip("\n"))
    assert text.endswith(
        f'[mcp_servers.pyro]\ncommand = "{real_pyro()}"\nargs = ["mcp", "serve", "--profile", "vm-run"]\n')
    assert len(backups(cfg)) == 1

    code, out = pyro_json(home, "connect", "codex", "--profile", "vm-run")
    assert (code, out["action"]) == (0, "unchanged") and cfg.read_text() == text
    code, entry = host_status(home, "codex")
    assert (code, entry["status"]) == (0, "ok")


@pytest.mark.parametrize("host", ["claude-code", "codex"])
def test_stale_registration_is_diagnosed_and_repaired(home, tmp_path, host):
    old = stale_copy(tmp_path)
    code, out = pyro_json(home, "connect", host, "--profile", "vm-run", exe=str(old))
    assert code == 0, out
    code, entry = host_status(home, host)
    assert (code, entry["status"]) == (0, "ok")

    old.unlink()
    code, entry = host_status(home, host)
    assert code == 1
    assert (entry["status"], entry["command_valid"]) == ("broken", False)
    assert "does not exist" in entry["problem"]
    assert entry["advice"] == f"run `pyro host repair {host}`"
    human = pyro(home, "doctor")
    assert "INVALID" in human.stdout and human.returncode == 1

    code, out = pyro_json(home, "repair", host)
    assert (code, out["action"]) == (0, "updated"), out
    # The user's flags survive; only the command moves to this binary.
    assert out["after"] == {"command": real_pyro(), "args": ["mcp", "serve", "--profile", "vm-run"]}
    code, entry = host_status(home, host)
    assert (code, entry["status"]) == (0, "ok")
    code, out = pyro_json(home, "repair", host)
    assert (code, out["action"]) == (0, "unchanged")


def test_a_config_file_pyro_cannot_read_is_left_alone(home):
    cfg = home / ".claude.json"
    cfg.write_text("{ this is not json")
    p = pyro(home, "connect", "claude-code")
    assert p.returncode == 1
    assert ".claude.json is not valid" in p.stderr
    assert cfg.read_text() == "{ this is not json" and not backups(cfg)
    code, entry = host_status(home, "claude-code")
    assert (code, entry["status"]) == (1, "broken")


def test_opencode_print_config_and_repair(home, tmp_path):
    p = pyro(home, "print-config", "opencode", "--profile", "workspace-full")
    assert p.returncode == 0, p.stderr
    snippet = json.loads(p.stdout)
    assert snippet["$schema"] == "https://opencode.ai/config.json"
    assert snippet["mcp"]["pyro"] == {
        "type": "local", "enabled": True,
        "command": [real_pyro(), "mcp", "serve", "--profile", "workspace-full"]}

    code, entry = host_status(home, "opencode")
    assert (code, entry["status"]) == (0, "not-connected")
    assert "print-config" in entry["advice"]
    assert pyro(home, "connect", "opencode").returncode == 2

    # A user config holding the snippet, pointing at a vanished binary.
    cfg = home / ".config" / "opencode" / "opencode.json"
    cfg.parent.mkdir(parents=True)
    snippet["mcp"]["pyro"]["command"][0] = str(tmp_path / "gone" / "pyro")
    snippet["mcp"]["pyro"]["environment"] = {"A": "1"}
    snippet["theme"] = "dark"
    cfg.write_text(json.dumps(snippet))
    code, entry = host_status(home, "opencode")
    assert (code, entry["status"]) == (1, "broken")

    code, out = pyro_json(home, "repair", "opencode")
    assert (code, out["action"], out["method"]) == (0, "updated", "config-file"), out
    data = json.loads(cfg.read_text())
    assert data["theme"] == "dark"
    assert data["mcp"]["pyro"]["environment"] == {"A": "1"}
    assert data["mcp"]["pyro"]["command"] == [real_pyro(), "mcp", "serve", "--profile", "workspace-full"]
    code, entry = host_status(home, "opencode")
    assert (code, entry["status"]) == (0, "ok")


def test_unknown_hosts_and_verbs_are_usage_errors(home):
    for args in (["connect", "vscode"], ["connect"], ["frobnicate"], ["print-config", "codex"],
                 ["connect", "codex", "--profile", "nope"]):
        p = pyro(home, *args)
        assert p.returncode == 2, args
        assert p.stderr.startswith("error: "), (args, p.stderr)


# ---- the hosts' own CLIs ------------------------------------------------------

def cli_path(name):
    exe = npm_bin(name)
    if exe is None:
        pytest.skip(f"the {name} CLI did not install from npm here")
    return os.path.dirname(exe) + os.pathsep + "/usr/local/bin:/usr/bin:/bin"


def host_cli(home, path, *args):
    env = dict(os.environ, HOME=str(home), PATH=path)
    return subprocess.run(list(args), capture_output=True, text=True, env=env,
                          timeout=300, stdin=subprocess.DEVNULL, cwd=str(home))


def test_claude_code_cli_registers_and_connects(home, tmp_path):
    path = cli_path("claude")
    assert host_cli(home, path, "claude", "mcp", "add", "--scope", "user", "other", "--",
                    "/bin/true").returncode == 0

    code, out = pyro_json(home, "connect", "claude-code", path=path)
    assert code == 0, out
    assert (out["action"], out["method"]) == ("added", "host-cli")
    # Claude Code's health check starts `pyro mcp serve` and does the MCP
    # handshake with it.
    listed = host_cli(home, path, "claude", "mcp", "list")
    line = next(l for l in listed.stdout.splitlines() if l.startswith("pyro:"))
    assert real_pyro() in line and "Connected" in line, listed.stdout
    assert "other:" in listed.stdout

    code, out = pyro_json(home, "connect", "claude-code", path=path)
    assert (code, out["action"]) == (0, "unchanged")

    # Break it (binary moved away), then repair through the CLI.
    old = stale_copy(tmp_path)
    assert pyro_json(home, "connect", "claude-code", path=path, exe=str(old))[0] == 0
    old.unlink()
    assert host_status(home, "claude-code", path=path)[1]["status"] == "broken"
    code, out = pyro_json(home, "repair", "claude-code", path=path)
    assert (code, out["method"]) == (0, "host-cli"), out
    listed = host_cli(home, path, "claude", "mcp", "list")
    line = next(l for l in listed.stdout.splitlines() if l.startswith("pyro:"))
    assert real_pyro() in line and "Connected" in line, listed.stdout
    assert "other:" in listed.stdout
    code, entry = host_status(home, "claude-code", path=path)
    assert (code, entry["status"], entry["cli"]["found"]) == (0, "ok", True)


def test_codex_cli_registers(home):
    path = cli_path("codex")
    assert host_cli(home, path, "codex", "mcp", "add", "other", "--", "/bin/true").returncode == 0
    code, out = pyro_json(home, "connect", "codex", path=path)
    assert code == 0, out
    assert (out["action"], out["method"]) == ("added", "host-cli")
    listed = host_cli(home, path, "codex", "mcp", "list", "--json")
    servers = {s["name"]: s for s in json.loads(listed.stdout)}
    assert servers["pyro"]["transport"]["command"] == real_pyro()
    assert servers["pyro"]["transport"]["args"] == ["mcp", "serve"]
    assert servers["pyro"]["enabled"] is True
    assert "other" in servers
    code, out = pyro_json(home, "connect", "codex", path=path)
    assert (code, out["action"]) == (0, "unchanged")
    code, entry = host_status(home, "codex", path=path)
    assert (code, entry["status"], entry["cli"]["found"]) == (0, "ok", True)
