"""A real local MCP server (built with the `mcp` package) whose every tool call is appended to
a log file: ``python tests/mcp_server.py --log calls.jsonl [--http PORT]`` serves stdio, or
streamable HTTP on 127.0.0.1:PORT at ``/mcp`` (prints ``READY`` once listening)."""

from __future__ import annotations

import argparse
import json
import os
import time

from mcp.server.mcpserver import MCPServer

server = MCPServer("weather")
LOG = {"path": "mcp_calls.jsonl"}


def _log(tool: str, args: dict[str, object]) -> None:
    with open(LOG["path"], "a", encoding="utf-8") as f:
        f.write(json.dumps({"tool": tool, "args": args, "pid": os.getpid(),
                            "at": time.time()}) + "\n")


@server.tool()
def get_weather(city: str) -> str:
    """The current weather in a city."""
    _log("get_weather", {"city": city})
    return f"sunny in {city}"


@server.tool()
def book_table(restaurant: str, people: int) -> str:
    """Book a table (a side effect: it must happen once)."""
    _log("book_table", {"restaurant": restaurant, "people": people})
    return f"booked {restaurant} for {people}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True)
    parser.add_argument("--http", type=int, default=None)
    args = parser.parse_args()
    LOG["path"] = args.log
    if args.http is None:
        server.run("stdio")
    else:
        print("READY", flush=True)
        server.run("streamable-http", host="127.0.0.1", port=args.http)


if __name__ == "__main__":
    main()
