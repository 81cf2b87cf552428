"""The official MCP Python SDK against `pennyworth serve` (driven by tests/mcp_sdk.rs).

    python test_mcp_sdk.py BASE_URL ADMIN_KEY USER_KEY

The gateway is configured with upstream servers `up` (2026-07-28, stateless), `old` (the
2025-11-25 handshake with a session), `tight` (`up` with a 1 s timeout) and `down` (nothing
listens). Every check runs in the handshake mode and in the 2026-07-28 mode; `auto` must pick
2026-07-28. Exits non-zero with a message on the first failed check.
"""

import asyncio
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

BASE, ADMIN_KEY, USER_KEY = sys.argv[1:4]
URL = BASE + "/v1/mcp"


def client(key: str, mode: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return Client(streamable_http_client(URL, http_client=http), mode=mode, cache=None)


def text(result) -> str:
    assert result.content, f"no content: {result}"
    return result.content[0].text


async def expect_error(c: Client, name: str, args: dict, code: int, contains: str) -> None:
    try:
        result = await c.call_tool(name, args)
    except MCPError as e:
        assert e.code == code, f"{name}: code {e.code}, want {code}: {e}"
        assert contains in str(e), f"{name}: {e!r} lacks {contains!r}"
        return
    raise AssertionError(f"{name}: expected MCP error {code}, got {result}")


async def admin_checks(mode: str, version: str) -> None:
    async with client(ADMIN_KEY, mode) as c:
        assert c.protocol_version == version, f"{mode}: negotiated {c.protocol_version}, want {version}"
        tools = {t.name: t for t in (await c.list_tools()).tools}
        for name in ["list_models", "whoami", "chat", "up__add", "up__shout", "up__slow", "old__add", "tight__slow"]:
            assert name in tools, f"{mode}: tool {name} missing from {sorted(tools)}"
        assert not any(n.startswith("down__") for n in tools), f"{mode}: tools of a server that is down: {sorted(tools)}"
        assert "echo" in tools["chat"].input_schema["properties"]["model"]["enum"]

        who = await c.call_tool("whoami", {})
        assert who.structured_content["user"] == "admin", who

        models = await c.call_tool("list_models", {})
        ids = [m["id"] for m in models.structured_content["models"]]
        assert "echo" in ids, ids

        chat = await c.call_tool("chat", {"model": "echo", "prompt": "hello from the sdk"})
        assert not chat.is_error, chat
        assert text(chat) == "hello from the sdk", chat
        assert chat.structured_content["usage"]["completion_tokens"] > 0, chat

        bad = await c.call_tool("chat", {"model": "no-such-model", "prompt": "x"})
        assert bad.is_error and "does not exist" in text(bad), bad

        # The chat call reached the ledger (written off the request path: poll briefly).
        for _ in range(50):
            mine = await c.call_tool("get_usage", {"group_by": "model"})
            assert not mine.is_error, mine
            rows = {r["model"]: r for r in mine.structured_content["data"]}
            if "echo" in rows:
                break
            await asyncio.sleep(0.1)
        assert rows["echo"]["requests"] >= 1, mine.structured_content

        added = await c.call_tool("up__add", {"a": 2, "b": 3})
        assert not added.is_error and text(added) == "5", added
        assert "x-mcp-header" not in str(tools["up__locate"].input_schema), tools["up__locate"]
        located = await c.call_tool("up__locate", {"region": "eu-west-1", "query": "q"})
        assert not located.is_error and text(located) == "q in eu-west-1", located
        shouted = await c.call_tool("old__shout", {"text": "quiet"})
        assert text(shouted) == "QUIET", shouted

        progress: list[float] = []

        async def on_progress(p: float, total: float | None, message: str | None) -> None:
            progress.append(p)

        slow = await c.call_tool("up__slow", {"seconds": 0.3}, progress_callback=on_progress)
        assert text(slow) == "waited 0.3s", slow
        assert progress == [1.0, 2.0], f"{mode}: progress {progress}"

        await expect_error(c, "down__add", {"a": 1, "b": 1}, -32603, "unreachable")
        await expect_error(c, "tight__slow", {"seconds": 5}, -32603, "did not answer in time")
        await expect_error(c, "nosuch", {}, -32602, "does not exist")
    print(f"{mode}: admin ok ({version})")


async def user_checks(mode: str) -> None:
    async with client(USER_KEY, mode) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert {"list_models", "whoami", "chat"} <= set(tools), sorted(tools)
        assert not any("__" in n for n in tools), f"{mode}: user sees upstream tools {sorted(tools)}"
        allowed = tools["chat"].input_schema["properties"]["model"]["enum"]
        assert "echo" in allowed and "claude-opus-4.1" not in allowed, allowed
        await expect_error(c, "up__add", {"a": 1, "b": 2}, -32602, "not permitted")
        denied = await c.call_tool("chat", {"model": "claude-opus-4.1", "prompt": "x"})
        assert denied.is_error, denied
    print(f"{mode}: user ok")


async def main() -> None:
    await admin_checks("legacy", "2025-11-25")
    await admin_checks("2026-07-28", "2026-07-28")
    await admin_checks("auto", "2026-07-28")
    await user_checks("legacy")
    await user_checks("2026-07-28")
    print("all MCP SDK checks passed")


asyncio.run(main())
