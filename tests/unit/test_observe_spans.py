"""Spans rebuilt from the journal: names, attributes, one trace across suspend and resume,
and OTLP export through the SDK's in-memory exporter."""

from __future__ import annotations

import time
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tether
from tests.observe_fakes import model_call, otlp_collector, span_names, tool_call
from tether.observe import names as n
from tether.observe.export import _SUSPENSION_MIN_SECONDS, instrument
from tether.observe.spans import build_spans, format_span_tree, trace_id


def make_app(url: str) -> tether.App:
    app = tether.App(url)

    async def research() -> dict[str, Any]:
        return model_call("researcher", "gpt-4o-mini", 1000, 200)

    async def search() -> str:
        return tool_call("researcher", "search_company")

    async def draft() -> dict[str, Any]:
        return model_call("drafter", "claude-3-5-haiku-latest", 500, 300, provider="anthropic")

    async def flaky_send() -> str:
        raise ValueError("smtp said no")

    @app.workflow(name="outreach")
    async def outreach(ctx: tether.Context, company: str) -> str:
        await ctx.run_step("research", research)
        await ctx.run_step("search", search)
        await ctx.run_step("draft", draft)
        await ctx.wait_for_signal("approval")
        try:
            await ctx.run_step("send", flaky_send, retry=tether.Retry(max_attempts=2,
                                                                      initial_delay=0.0))
        except tether.StepFailed:
            return "not sent"
        return "sent"

    return app


def test_span_tree_follows_genai_conventions(sqlite_url: str) -> None:
    app = make_app(sqlite_url)
    info = app.run("outreach", {"company": "acme"})
    assert info.status == "waiting"
    app.signal(info.id, "approval", {"approved": True})
    info = app.run("outreach", {"company": "acme"}, run_id=info.id)
    assert info.status == "succeeded"
    run = app.portal.run(app.store.get_run(info.id))
    steps = app.portal.run(app.store.load_steps(info.id))
    assert run is not None
    spans = build_spans(run, steps)
    by_name = {s.name: s for s in spans}
    assert list(by_name) == [
        "invoke_workflow outreach",
        "invoke_agent researcher",
        "chat gpt-4o-mini",
        "execute_tool search_company",
        "invoke_agent drafter",
        "chat claude-3-5-haiku-latest",
        "wait approval",
        "step send",
    ]
    root = by_name["invoke_workflow outreach"]
    assert {s.trace_id for s in spans} == {trace_id(info.id)}
    assert root.parent_id is None
    assert root.attributes[n.RUN_ID] == info.id
    researcher = by_name["invoke_agent researcher"]
    chat = by_name["chat gpt-4o-mini"]
    tool = by_name["execute_tool search_company"]
    assert chat.parent_id == researcher.span_id == tool.parent_id
    assert researcher.parent_id == root.span_id
    assert chat.attributes[n.OPERATION_NAME] == "chat"
    assert chat.attributes[n.REQUEST_MODEL] == "gpt-4o-mini"
    assert chat.attributes[n.PROVIDER_NAME] == "openai"
    assert chat.attributes[n.INPUT_TOKENS] == 1000
    assert chat.attributes[n.OUTPUT_TOKENS] == 200
    assert chat.attributes[n.COST_USD] > 0
    assert chat.attributes[n.ATTEMPT] == 1
    assert tool.attributes[n.TOOL_NAME] == "search_company"
    assert researcher.attributes[n.AGENT_NAME] == "researcher"
    assert researcher.end is not None
    assert researcher.end <= by_name["chat claude-3-5-haiku-latest"].start
    wait = by_name["wait approval"]
    assert wait.attributes[n.WAITING_FOR_HUMAN] is True
    assert wait.parent_id == by_name["invoke_agent drafter"].span_id
    send = by_name["step send"]
    assert send.status == "error"
    assert send.attributes[n.ERROR_TYPE] == "ValueError"
    assert send.attributes[n.ATTEMPT] == 2
    text = format_span_tree(spans).splitlines()
    assert text[0].startswith("invoke_workflow outreach  [")
    assert text[2].startswith("    chat gpt-4o-mini  [")
    assert "1200 tok" in text[2]
    assert "2 attempts" in text[-1]
    assert "error ValueError" in text[-1]
    # Rebuilt again, the ids are the same: nothing to store.
    assert [s.span_id for s in build_spans(run, steps)] == [s.span_id for s in spans]


def test_otlp_export_once_per_span_across_suspend_and_resume(sqlite_url: str) -> None:
    app = make_app(sqlite_url)
    exporter = InMemorySpanExporter()
    instrument(app, SimpleSpanProcessor(exporter))
    info = app.run("outreach", {"company": "acme"})
    assert info.status == "waiting"
    first = exporter.get_finished_spans()
    # Suspended: the finished steps and the closed researcher node, not the run itself.
    assert {s.name for s in first} >= {"chat gpt-4o-mini", "invoke_agent researcher"}
    assert "invoke_workflow outreach" not in {s.name for s in first}
    app.signal(info.id, "approval", {"approved": True})
    app.run("outreach", {"company": "acme"}, run_id=info.id)
    spans = exporter.get_finished_spans()
    ids = [s.context.span_id for s in spans]
    assert len(ids) == len(set(ids)) == 8
    assert {s.context.trace_id for s in spans} == {int(trace_id(info.id), 16)}
    root = next(s for s in spans if s.name == "invoke_workflow outreach")
    assert root.parent is None
    chat = next(s for s in spans if s.name == "chat gpt-4o-mini")
    assert chat.attributes is not None
    assert chat.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert chat.parent is not None


def test_a_fresh_process_exports_only_what_followed_the_suspension(sqlite_url: str) -> None:
    app = make_app(sqlite_url)
    info = app.run("outreach", {"company": "acme"})
    # A real suspension lasts longer than an in-process wait: let the wait outlast that mark.
    wait = app.get_run(info.id).steps[-1]
    assert wait.kind == "signal" and wait.started_at is not None
    while time.time() - wait.started_at.timestamp() <= _SUSPENSION_MIN_SECONDS:
        time.sleep(0.005)
    app.signal(info.id, "approval", {"approved": True})
    resumed = make_app(sqlite_url)  # another process: it exported nothing of this run
    exporter = InMemorySpanExporter()
    instrument(resumed, SimpleSpanProcessor(exporter))
    resumed.run("outreach", {"company": "acme"}, run_id=info.id)
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert "chat gpt-4o-mini" not in names
    assert names == sorted(["invoke_workflow outreach", "invoke_agent drafter", "wait approval",
                            "step send"])


def test_instrument_without_configuration_does_nothing(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    app = make_app(sqlite_url)
    assert instrument(app) is None
    assert app.executor.listeners == [app.run_events.on_run_end]  # the run event stream
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    export = instrument(app)
    assert export is not None
    assert app.executor.listeners == [app.run_events.on_run_end, export.on_run]
    export.processor.shutdown()


def test_otlp_over_http_when_the_standard_settings_are_present(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real OTLP/HTTP exporter, configured only by OTEL_EXPORTER_OTLP_ENDPOINT, delivers
    the run's spans to a collector (a local HTTP server decoding the protobuf)."""
    with otlp_collector() as (endpoint, received):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "sales-agent")
        app = make_app(sqlite_url)
        export = instrument(app)
        assert export is not None
        info = app.run("outreach", {"company": "acme"})
        app.signal(info.id, "approval", {"approved": True})
        app.run("outreach", {"company": "acme"}, run_id=info.id)
        export.shutdown()  # flushes the batch
    spans = [
        span
        for request in received
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    assert sorted(s.name for s in spans) == sorted([
        "invoke_workflow outreach", "invoke_agent researcher", "chat gpt-4o-mini",
        "execute_tool search_company", "invoke_agent drafter", "chat claude-3-5-haiku-latest",
        "wait approval", "step send",
    ])
    assert {s.trace_id.hex() for s in spans} == {trace_id(info.id)}
    service = {
        attr.value.string_value
        for request in received
        for resource_spans in request.resource_spans
        for attr in resource_spans.resource.attributes
        if attr.key == "service.name"
    }
    assert service == {"sales-agent"}
    chat = next(s for s in spans if s.name == "chat gpt-4o-mini")
    attrs = {a.key: a.value for a in chat.attributes}
    assert attrs["gen_ai.usage.input_tokens"].int_value == 1000
    assert attrs["tether.run.id"].string_value == info.id


def test_a_suspended_runs_spans_leave_without_waiting_for_the_batch_timer(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker that resumes a run takes the spans ended before its suspension as exported by
    # the worker that suspended it; held in that worker's batch (5 s by default), a SIGKILL
    # meanwhile lost them for good. They are sent once the segment ends: here the batch timer
    # is a minute and nothing is flushed or shut down, yet the collector gets them.
    with otlp_collector() as (endpoint, received):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
        app = make_app(sqlite_url)
        export = instrument(app)
        assert export is not None
        assert app.run("outreach", {"company": "acme"}).status == "waiting"
        deadline = time.monotonic() + 30
        while "chat gpt-4o-mini" not in span_names(received):
            assert time.monotonic() < deadline, "the suspended run's spans never left"
            time.sleep(0.05)
        export.shutdown()


def _rec(seq: int, node: str, start: float, end: float) -> Any:
    from tether.store.base import StepRecord

    return StepRecord("r", seq, "chat", "step", "completed", started_at=start, finished_at=end,
                      meta={n.OPERATION_NAME: "chat", n.NODE: node, n.REQUEST_MODEL: "m"})


def _run(status: str = "succeeded") -> Any:
    from tether.store.base import RunRecord

    return RunRecord("r", "wf", "1", status, {}, None, None, {}, None, None, 0.0, 9.0, 0.0,
                     9.0, None, None, None, None, 1, 0, False)


def test_a_loop_revisiting_a_node_gets_a_span_per_visit() -> None:
    steps = [_rec(1, "writer", 0, 1), _rec(2, "critic", 1, 2), _rec(3, "writer", 2, 3)]
    agents = [s for s in build_spans(_run(), steps) if s.name.startswith("invoke_agent")]
    assert [(s.name, s.start, s.end) for s in agents] == [
        ("invoke_agent writer", 0, 1), ("invoke_agent critic", 1, 2),
        ("invoke_agent writer", 2, 3),
    ]
    assert len({s.span_id for s in agents}) == 3


def test_parallel_nodes_keep_one_span_each() -> None:
    steps = [_rec(1, "a", 0, 2), _rec(2, "b", 0, 3), _rec(3, "a", 2, 4), _rec(4, "b", 3, 5)]
    agents = [s for s in build_spans(_run(), steps) if s.name.startswith("invoke_agent")]
    assert [(s.name, s.start, s.end) for s in agents] == [
        ("invoke_agent a", 0, 4), ("invoke_agent b", 0, 5),
    ]
    spans = build_spans(_run("running"), steps)
    # While the run goes on, a node whose steps may continue stays open (not exported yet).
    assert all(s.end is None for s in spans if s.name.startswith(("invoke_agent", "invoke_w")))
