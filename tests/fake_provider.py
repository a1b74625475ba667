"""A local fake OpenAI-compatible provider: chat completions with tool calls and usage.

It runs on 127.0.0.1 (a random port) in a background thread with its own event loop, or as a
process (``python -m tests.fake_provider --latency 0.2``, prints ``READY <url>``). Responses
come from a responder function over the request body (default: call each offered tool once,
then give the structured output or text). Faults are injected per request, in order:
latency, a hang (timeout), 429 with Retry-After, 500, 400, malformed JSON, a dropped connection.

Tests drive pydantic-ai's real `OpenAIChatModel` against it (`FakeProvider.model()`): the
provider path end to end, without the network.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Responder = Callable[[dict[str, Any]], dict[str, Any]]
"""Takes the request body, returns ``{"content": str}`` or ``{"tool_calls": [{"name": …,
"arguments": {…}}]}`` (optionally ``"usage": {"prompt_tokens": …, "completion_tokens": …}``)."""


@dataclass
class Fault:
    kind: str
    """``hang``, ``429``, ``500``, ``400``, ``malformed`` or ``disconnect``."""
    retry_after: float | None = None
    seconds: float = 30.0
    message: str = ""


class FakeProvider:
    """An OpenAI-compatible chat-completions server for tests."""

    def __init__(self, responder: Responder | None = None, *, latency: float = 0.0,
                 port: int = 0) -> None:
        self.responder = responder or default_responder
        self.latency = latency
        self.port = port
        self.requests: list[dict[str, Any]] = []
        """Every request body received, in order (including ones answered with a fault)."""
        self.answered = 0
        """Requests answered with a completion (not a fault)."""
        self.stream_delay = 0.0
        """Seconds between the text chunks of a streamed answer."""
        self.text_chunks_sent: list[tuple[float, str]] = []
        """``(unix time, text)`` of every streamed text chunk, as written to the socket."""
        self._faults: collections.deque[Fault] = collections.deque()
        self.fault_for: Callable[[dict[str, Any]], Fault | None] | None = None
        """Chooses a fault per request from its body (after the queued ones), e.g. by node."""
        self._ids = itertools.count(1)
        self.rate_limit: tuple[int, float] | None = None
        """``(requests, seconds)``: answer 429 to a request that would make more than
        `requests` accepted in any `seconds` window (as a provider's rate limit does)."""
        self.rate_limited = 0
        """Requests answered 429 by `rate_limit`, counted here at the server."""
        self._accepted: collections.deque[float] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def fail_next(self, kind: str, times: int = 1, *, retry_after: float | None = None,
                  seconds: float = 30.0, message: str = "") -> None:
        """Answer the next `times` requests with a fault instead of a completion."""
        for _ in range(times):
            self._faults.append(Fault(kind, retry_after, seconds, message))

    def model(self, name: str = "gpt-4.1-mini") -> Any:
        """pydantic-ai's real OpenAI chat model pointed at this server (SDK retries off: the
        tether step's retry policy does the retrying)."""
        from openai import AsyncOpenAI
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        client = AsyncOpenAI(base_url=self.url, api_key="test-key", max_retries=0)
        return OpenAIChatModel(name, provider=OpenAIProvider(openai_client=client))

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeProvider:
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            # Connections cut at shutdown end their tasks with CancelledError: not news.
            loop.set_exception_handler(lambda loop, context: None if isinstance(
                context.get("exception"), asyncio.CancelledError | ConnectionError)
                else loop.default_exception_handler(context))
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", self.port, backlog=4096))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            self._server.close()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=main, name="fake-provider", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- HTTP ----------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in
                           (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                keep = await self._answer(lines[0], body, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _answer(self, request_line: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        if request_line.startswith("GET /stats"):
            self._write(writer, 200, {"requests": len(self.requests), "answered": self.answered,
                                      "rate_limited": self.rate_limited})
            return True
        if "/chat/completions" not in request_line:
            self._write(writer, 404, {"error": {"message": f"no route {request_line}"}})
            return True
        data = json.loads(body or b"{}")
        self.requests.append(data)
        fault = self._faults.popleft() if self._faults else None
        if fault is None and self.fault_for is not None:
            fault = self.fault_for(data)
        if fault is None and self.rate_limit is not None:
            fault = self._over_rate()
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault is not None:
            return await self._fault(fault, writer)
        reply = self.responder(data)
        self.answered += 1
        if data.get("stream"):
            await self._stream(writer, data, reply, next(self._ids))
            return False
        self._write(writer, 200, completion(data, reply, next(self._ids)))
        await writer.drain()
        return True

    def _over_rate(self) -> Fault | None:
        assert self.rate_limit is not None
        count, seconds = self.rate_limit
        now = time.monotonic()
        while self._accepted and self._accepted[0] <= now - seconds:
            self._accepted.popleft()
        if len(self._accepted) >= count:
            self.rate_limited += 1
            return Fault("429", retry_after=self._accepted[0] + seconds - now)
        self._accepted.append(now)
        return None

    async def _stream(self, writer: asyncio.StreamWriter, request: dict[str, Any],
                      reply: dict[str, Any], n: int) -> None:
        """Answer ``stream: true`` as OpenAI does (SSE chunks); text goes out word by word,
        `stream_delay` apart, and the time each text chunk was written is kept in
        `text_chunks_sent` (to measure how fast a delta reaches a watcher)."""
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"connection: close\r\n\r\n")
        whole = completion(request, reply, n)
        message = whole["choices"][0]["message"]
        base = {"id": whole["id"], "object": "chat.completion.chunk",
                "created": whole["created"], "model": whole["model"]}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            body = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(body)}\n\n".encode()

        writer.write(chunk({"role": "assistant", "content": ""}))
        content = message.get("content") or ""
        words = [w + " " for w in content.split(" ")] if content else []
        if words:
            words[-1] = words[-1][:-1]
        for word in words:
            writer.write(chunk({"content": word}))
            await writer.drain()
            self.text_chunks_sent.append((time.time(), word))
            if self.stream_delay:
                await asyncio.sleep(self.stream_delay)
        for i, call in enumerate(message.get("tool_calls") or []):
            writer.write(chunk({"tool_calls": [{"index": i, **call}]}))
        writer.write(chunk({}, whole["choices"][0]["finish_reason"]))
        usage = {**base, "choices": [], "usage": whole["usage"]}
        writer.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        await writer.drain()

    async def _fault(self, fault: Fault, writer: asyncio.StreamWriter) -> bool:
        if fault.kind == "hang":
            await asyncio.sleep(fault.seconds)
            return False
        if fault.kind == "disconnect":
            return False
        if fault.kind == "malformed":
            self._raw(writer, 200, b'{"id": "chatcmpl-broken", "choices": [{"mess')
            return True
        status = int(fault.kind)
        message = fault.message or {429: "Rate limit reached, slow down",
                                    500: "The server had an error"}.get(status, "Bad request")
        kind = {429: "rate_limit_exceeded", 500: "server_error"}.get(status, "invalid_request_error")
        extra = {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
        self._write(writer, status, {"error": {"message": message, "type": kind, "code": kind}},
                    extra)
        return True

    def _write(self, writer: asyncio.StreamWriter, status: int, payload: Any,
               headers: dict[str, str] | None = None) -> None:
        self._raw(writer, status, json.dumps(payload).encode(), headers)

    @staticmethod
    def _raw(writer: asyncio.StreamWriter, status: int, body: bytes,
             headers: dict[str, str] | None = None) -> None:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{extra}\r\n".encode() + body)


def completion(request: dict[str, Any], reply: dict[str, Any], n: int) -> dict[str, Any]:
    """A chat.completion object for `reply`."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
    finish = "stop"
    if reply.get("tool_calls"):
        finish = "tool_calls"
        message["tool_calls"] = [
            {"id": f"call_{n}_{i}", "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))}}
            for i, c in enumerate(reply["tool_calls"])
        ]
    prompt_tokens = max(1, len(json.dumps(request.get("messages", []))) // 4)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": 12,
             "total_tokens": prompt_tokens + 12, **reply.get("usage", {})}
    return {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model", "fake"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage}


def default_responder(request: dict[str, Any]) -> dict[str, Any]:
    """Call each offered tool once (in order), then answer: ``final_result`` with arguments
    generated from its schema when offered, else text."""
    tools = {t["function"]["name"]: t["function"] for t in request.get("tools", [])}
    called = {c["function"]["name"] for m in request.get("messages", [])
              for c in (m.get("tool_calls") or [])}
    for name, fn in tools.items():
        if name != "final_result" and name not in called:
            return {"tool_calls": [{"name": name, "arguments": sample(fn.get("parameters", {}))}]}
    if "final_result" in tools:
        schema = tools["final_result"].get("parameters", {})
        return {"tool_calls": [{"name": "final_result", "arguments": sample(schema)}]}
    return {"content": "done"}


def sample(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """A value matching a JSON schema (enough for pydantic-generated schemas)."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return sample(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return sample(schema[key][0], defs)
    kind = schema.get("type", "object")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        return {k: sample(v, defs) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [sample(schema.get("items", {"type": "string"}), defs)]
    return {"string": "sample", "integer": 1, "number": 1.0, "boolean": True,
            "null": None}.get(kind, "sample")


@contextlib.contextmanager
def running(responder: Responder | None = None, *, latency: float = 0.0) -> Iterator[FakeProvider]:
    with FakeProvider(responder, latency=latency) as server:
        yield server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    server = FakeProvider(latency=args.latency, port=args.port).start()
    print(f"READY {server.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
