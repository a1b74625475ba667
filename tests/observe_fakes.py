"""Fabricated journals for the observe tests: workflows whose steps record what the agents
layer records for model and tool calls (meta keys from tether.observe.names, usage)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import tether
from tether.observe import names as n
from tether.observe.cost import price_call


def model_call(
    node: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    *,
    prompt_hash: str = "p1",
    provider: str = "openai",
) -> dict[str, Any]:
    """Inside a running step: record one model call as the agents layer does."""
    price = price_call(model, provider=provider, input_tokens=input_tokens,
                       output_tokens=output_tokens)
    step = tether.current_step()
    step.set_meta(**{
        n.OPERATION_NAME: n.OP_CHAT,
        n.NODE: node,
        n.AGENT_NAME: node,
        n.PROVIDER_NAME: provider,
        n.REQUEST_MODEL: model,
        n.RESPONSE_MODEL: model,
        n.INPUT_TOKENS: input_tokens,
        n.OUTPUT_TOKENS: output_tokens,
        n.PRICE_SOURCE: price.source,
        n.PROMPT_HASH: prompt_hash,
        **({n.COST_USD: price.cost_usd} if price.cost_usd is not None else {}),
    })
    step.add_usage(tether.Usage(
        llm_calls=1,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=price.cost_usd or 0.0,
        unpriced_calls=0 if price.priced else 1,
    ))
    return {"text": f"{node} answer"}


def tool_call(node: str, tool: str) -> str:
    step = tether.current_step()
    step.set_meta(**{n.OPERATION_NAME: n.OP_TOOL, n.NODE: node, n.AGENT_NAME: node,
                     n.TOOL_NAME: tool, n.RISK: "read"})
    step.add_usage(tether.Usage(tool_calls=1))
    return f"{tool} result"


@contextmanager
def otlp_collector() -> Iterator[tuple[str, list[Any]]]:
    """A local OTLP/HTTP collector: yields its endpoint URL and the list of
    `ExportTraceServiceRequest`s it received (decoded protobuf), appended as they arrive."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    received: list[Any] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = ExportTraceServiceRequest()
            request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
            received.append(request)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", received
    finally:
        server.shutdown()


def span_names(received: list[Any]) -> list[str]:
    """The names of every span in what an `otlp_collector` received."""
    return [span.name for request in received for rs in request.resource_spans
            for ss in rs.scope_spans for span in ss.spans]
