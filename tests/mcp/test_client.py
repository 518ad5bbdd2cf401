"""`pyro mcp serve` driven by the official MCP Python SDK client.

The protocol part runs the server directly (no VM needed); the VM session
boots real guests through PYRO_MCP_VM_SERVER (the test host's stdio bridge
on a PVM machine), in one server session to keep test-host boots few.
"""

import anyio
import jsonschema
import pytest
from mcp import Client

from conftest import server_params, vm_server_params

# Deadlines only so a hung server fails instead of hanging the suite.
PATIENCE = 600


def run(coro_fn):
    return anyio.run(coro_fn)


def check_schemas(tool):
    """Both schemas are valid JSON Schema (2020-12, MCP's default dialect)."""
    jsonschema.Draft202012Validator.check_schema(tool.input_schema)
    assert tool.input_schema["type"] == "object"
    assert tool.input_schema["additionalProperties"] is False
    assert tool.output_schema is not None
    jsonschema.Draft202012Validator.check_schema(tool.output_schema)
    assert tool.output_schema["type"] == "object"


@pytest.mark.parametrize("profile", [None, "vm-run", "workspace-core", "workspace-full"])
def test_handshake_and_tools_list(profile):
    args = [] if profile is None else ["--profile", profile]

    async def main():
        # mode "auto" first probes server/discover (2026-07-28), which must
        # fail cleanly so the SDK falls back to the initialize handshake.
        async with Client(server_params(*args), read_timeout_seconds=PATIENCE) as c:
            assert c.protocol_version == "2025-11-25"
            assert c.server_info.name == "pyro"
            assert c.server_capabilities.tools is not None
            assert c.server_capabilities.logging is not None
            want_profile = profile or "workspace-core"
            assert f"Profile {want_profile}" in c.instructions
            assert "Project source:" in c.instructions
            await c.send_ping()
            tools = (await c.list_tools()).tools
            names = [t.name for t in tools]
            if profile == "vm-run":
                assert names == ["vm_run"]
            else:
                # vm_run plus the 16 workspace-core workspace tools.
                assert names[0] == "vm_run" and len(names) == 17, names
                assert all(n.startswith("workspace_") for n in names[1:]), names
                for t in tools[1:]:
                    check_schemas(t)
            vm_run = tools[0]
            check_schemas(vm_run)
            props = vm_run.input_schema["properties"]
            assert set(props) == {
                "environment", "command", "vcpu_count", "mem_mib",
                "timeout_seconds", "ttl_seconds", "network", "allow_host_compat",
            }
            assert vm_run.input_schema["required"] == ["environment", "command"]
            defaults = {k: v.get("default") for k, v in props.items()}
            assert defaults["vcpu_count"] == 1 and defaults["mem_mib"] == 1024
            assert defaults["timeout_seconds"] == 30 and defaults["ttl_seconds"] == 600
            assert defaults["network"] is False and defaults["allow_host_compat"] is False
            # The schema accepts what the server accepts and rejects the rest.
            v = jsonschema.Draft202012Validator(vm_run.input_schema)
            assert v.is_valid({"environment": "debian:12", "command": "true"})
            for bad in [
                {"environment": "debian:12"},
                {"environment": "debian:12", "command": "true", "extra": 1},
                {"environment": "debian:12", "command": "true", "vcpu_count": 0},
                {"environment": "debian:12", "command": "true", "mem_mib": "1G"},
                {"environment": "windows", "command": "true"},
            ]:
                assert not v.is_valid(bad), bad

    run(main)


def test_tool_errors_are_results_with_actionable_text():
    async def main():
        async with Client(server_params("--profile", "vm-run"), read_timeout_seconds=PATIENCE) as c:
            r = await c.call_tool(
                "vm_run",
                {"environment": "debian:12", "command": "true", "vcpu_count": 99, "bogus": 1},
            )
            assert r.is_error
            text = r.content[0].text
            assert "vcpu_count must be an integer from 1 to 32, got number 99" in text
            assert 'unknown argument "bogus"' in text
            # The session survives the error.
            await c.send_ping()

    run(main)


def test_log_level_can_be_set():
    async def main():
        async with Client(server_params(), read_timeout_seconds=PATIENCE) as c:
            await c.set_logging_level("debug")
            await c.set_logging_level("error")

    run(main)


def test_vm_session_run_error_and_cancellation():
    """One test-host boot: a real vm_run, a tool error from the engine,
    a cancelled long run (with ping answered meanwhile), then another run."""
    params = vm_server_params("--profile", "vm-run")
    logs = []

    async def on_log(p):
        logs.append(p)

    async def main():
        async with Client(params, read_timeout_seconds=PATIENCE, logging_callback=on_log) as c:
            await c.set_logging_level("info")
            tools = (await c.list_tools()).tools
            output_schema = tools[0].output_schema

            # 1. A real run: output, exit code and progress come back.
            progress = []

            async def on_progress(value, total, message):
                progress.append(message)

            r = await c.call_tool(
                "vm_run",
                {"environment": "debian:12",
                 "command": "cat /etc/debian_version; echo oops >&2; exit 3"},
                progress_callback=on_progress,
            )
            assert not r.is_error, r.content
            s = r.structured_content
            jsonschema.validate(s, output_schema)
            assert s["exit_code"] == 3
            assert s["stdout"].startswith("12.")
            assert s["stderr"] == "oops\n"
            assert s["execution_mode"] == "guest_vsock"
            assert s["cleanup"]["vm_stopped"] is True
            assert "exit_code 3" in r.content[0].text
            assert any(m and m.startswith("booting VM") for m in progress), progress
            assert any(m and "running the command" in m for m in progress), progress

            # 2. An error from the engine is a tool result, not a protocol error.
            r = await c.call_tool(
                "vm_run", {"environment": "debian:12", "command": "true", "network": True}
            )
            assert r.is_error
            assert "network" in r.content[0].text

            # 3. Cancel a long run once its command is running.
            running = anyio.Event()

            async def on_long_progress(value, total, message):
                if message and "running the command" in message:
                    running.set()

            async def long_call():
                await c.call_tool(
                    "vm_run",
                    {"environment": "debian:12", "command": "sleep 600", "timeout_seconds": 900},
                    progress_callback=on_long_progress,
                )
                pytest.fail("the cancelled call returned")

            async with anyio.create_task_group() as tg:
                tg.start_soon(long_call)
                with anyio.fail_after(PATIENCE):
                    await running.wait()
                # The long run does not block other requests.
                await c.send_ping()
                # Cancelling the awaiting task makes the SDK send
                # notifications/cancelled for the request.
                tg.cancel_scope.cancel()
            with anyio.fail_after(PATIENCE):
                while not any(
                    isinstance(l.data, dict) and l.data.get("event") == "cancelled" for l in logs
                ):
                    await anyio.sleep(0.1)

            # 4. The server keeps working after the cancellation.
            r = await c.call_tool("vm_run", {"environment": "debian:12", "command": "echo again"})
            assert not r.is_error, r.content
            assert r.structured_content["stdout"] == "again\n"

    run(main)
