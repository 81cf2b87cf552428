"""An upstream MCP server for the gateway's tests: the official SDK's MCPServer (FastMCP) over
Streamable HTTP on 127.0.0.1, which refuses every request without the credential the gateway
is configured to send.

    python mcp_upstream_server.py PORT TOKEN [--stateful]

Prints `ready` once it accepts connections.
"""

import asyncio
import sys
from typing import Annotated

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field


def main() -> None:
    port = int(sys.argv[1])
    token = sys.argv[2]
    stateful = "--stateful" in sys.argv[3:]
    server = MCPServer("upstream-test")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Adds two integers."""
        return a + b

    @server.tool()
    def shout(text: str) -> str:
        """Upper-cases a text."""
        return text.upper()

    @server.tool()
    def locate(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})], query: str) -> str:
        """Answers where a query runs; `region` must arrive as the Mcp-Param-Region header too (2026-07-28)."""
        return f"{query} in {region}"

    @server.tool()
    async def slow(seconds: float, ctx: Context) -> str:
        """Waits, reporting progress twice, then says how long it waited."""
        await ctx.report_progress(1, 2, "halfway")
        await asyncio.sleep(seconds)
        await ctx.report_progress(2, 2, "done")
        return f"waited {seconds}s"

    app = server.streamable_http_app(stateless_http=not stateful)

    async def guarded(scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if headers.get(b"x-upstream-token", b"").decode() != token:
                await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"missing or wrong x-upstream-token"})
                return
        await app(scope, receive, send)

    config = uvicorn.Config(guarded, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(srv.serve())
        while not srv.started:
            if task.done():
                task.result()
                return
            await asyncio.sleep(0.05)
        print("ready", flush=True)
        await task

    asyncio.run(run())


if __name__ == "__main__":
    main()
