"""The MCP Inspector's CLI mode (npm @modelcontextprotocol/inspector) as a
second, independent client."""

import json
import subprocess

import pytest

from conftest import npm_bin, pyro_bin


def inspector(*args):
    exe = npm_bin("mcp-inspector")
    if exe is None:
        pytest.fail("mcp-inspector is not installed (tests/mcp/run installs it)")
    return subprocess.run(
        [exe, "--cli", pyro_bin(), "mcp", "serve", *args],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("profile", ["vm-run", "workspace-core", "workspace-full"])
def test_inspector_lists_tools_with_portable_schemas(profile):
    # --strict makes schema portability warnings visible on stderr.
    p = inspector("--profile", profile, "--method", "tools/list", "--strict")
    assert p.returncode == 0, p.stderr
    tools = json.loads(p.stdout)["tools"]
    names = [t["name"] for t in tools]
    assert names[0] == "vm_run"
    assert len(names) == (1 if profile == "vm-run" else 17), names
    assert tools[0]["inputSchema"]["required"] == ["environment", "command"]
    assert "Warning" not in p.stderr and "Error" not in p.stderr, p.stderr


def test_inspector_sees_a_tool_error():
    p = inspector(
        "--method", "tools/call", "--tool-name", "vm_run",
        "--tool-arg", "environment=debian:12", "--tool-arg", "command=ls",
        "--tool-arg", "mem_mib=64",
    )
    assert p.returncode != 0  # the Inspector exits nonzero on isError
    result = json.loads(p.stdout)
    assert result["isError"] is True
    assert "mem_mib must be an integer from 256 to 65536" in result["content"][0]["text"]
