"""Shared setup for the MCP client tests; tests/mcp/run sets the variables."""

import os
import shlex
import shutil

import pytest
from mcp import StdioServerParameters


def pyro_bin():
    path = os.environ.get("PYRO_BIN")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("PYRO_BIN must name the pyro binary (tests/mcp/run sets it)")
    return path


def npm_bin(name):
    """A CLI from the cached npm install, or None when it did not install."""
    d = os.environ.get("PYRO_MCP_NPM_BIN", "")
    p = os.path.join(d, name)
    return p if d and os.access(p, os.X_OK) else None


def server_params(*args, cwd=None):
    """`pyro mcp serve ARGS` on this machine (no VM needed for the protocol)."""
    return StdioServerParameters(
        command=pyro_bin(),
        args=["mcp", "serve", *args],
        env=dict(os.environ),
        cwd=cwd,
    )


def vm_server_params(*args):
    """`pyro mcp serve ARGS` where VMs boot: through the test host's stdio
    bridge on this machine (PYRO_MCP_VM_SERVER), skipped when not given."""
    prefix = os.environ.get("PYRO_MCP_VM_SERVER")
    if not prefix:
        pytest.skip("PYRO_MCP_VM_SERVER is not set (tests/mcp/run --no-vm)")
    argv = shlex.split(prefix)
    return StdioServerParameters(
        command=argv[0],
        args=[*argv[1:], "mcp", "serve", *args],
        env=dict(os.environ),
    )


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh HOME (and no host config overrides) for host-helper tests."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    for var in ("CLAUDE_CONFIG_DIR", "CODEX_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    return h


def which_in(path, name):
    return shutil.which(name, path=path)
