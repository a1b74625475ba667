"""Every run's event stream, on both stores: what a watcher of `handle.events()` sees, in
order, once — across a suspension, a resume on another App, and events emitted again."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import tether
from tether.store.base import NewRunEvent, StepRecord


def make_app(url: str) -> tether.App:
    app = tether.App(url)

    @app.step()
    async def add(x: int) -> int:
        return x + 1

    @app.workflow(name="counter")
    async def counter(ctx: tether.Context, n: int) -> int:
        first = await add(n)
        await ctx.wait_for_signal("go")
        return await add(first)

    return app


def kinds(events: list[Any]) -> list[tuple[str, int | None]]:
    return [(e.kind, e.seq) for e in events]


def test_a_suspended_and_resumed_run_streams_each_event_once(store_url: str) -> None:
    app = make_app(store_url)
    other = make_app(store_url)  # resumes the run: another App, as on another worker
    try:
        info = app.run("counter", {"n": 1})
        handle = tether.RunHandle(app, info.id)
        early = list(handle.events(follow=False))
        assert kinds(early) == [("run_started", None), ("step_started", 1),
                                ("step_completed", 1), ("waiting", 2), ("suspended", None)]
        app.signal(info.id, "go", {})
        assert other.run("counter", run_id=info.id).output == 3
        events = list(handle.events())  # follows until the finished event
        assert kinds(events) == [
            *kinds(early), ("resumed", None), ("signal_received", 2), ("step_started", 3),
            ("step_completed", 3), ("finished", None)]
        assert events[-1].data == {"status": "succeeded"}
        ids = [e.id for e in events]
        assert ids == sorted(set(ids))
        # The replay on resume emitted the first step's events again: stored once.
        assert kinds(events).count(("step_completed", 1)) == 1
        # Resuming after the last id seen yields exactly the rest.
        rest = list(handle.events(after=early[-1].id))
        assert [e.id for e in rest] == ids[len(early):]

        async def watch() -> list[str]:
            return [e.kind async for e in handle.events(after=early[-1].id)]

        assert app.portal.run(watch()) == [e.kind for e in rest]
    finally:
        app.close()
        other.close()


def test_store_keeps_a_keyed_event_once(store_url: str) -> None:
    app = tether.App(store_url)
    try:
        store = app.store

        async def scenario() -> list[tuple[str, Any]]:
            await store.append_run_events([
                NewRunEvent("r", "step_completed", 1.0, 1, {"n": 1}, "r:1:completed"),
                NewRunEvent("r", "model_text_delta", 1.1, 2, {"delta": "Hel"}),
            ])
            await store.append_run_events([
                NewRunEvent("r", "step_completed", 1.0, 1, {"n": 1}, "r:1:completed"),
                NewRunEvent("r", "model_text_delta", 1.2, 2, {"delta": "lo"}),
            ])
            return [(e.kind, e.data) for e in await store.read_run_events("r")]

        assert app.portal.run(scenario()) == [
            ("step_completed", {"n": 1}), ("model_text_delta", {"delta": "Hel"}),
            ("model_text_delta", {"delta": "lo"})]
        assert app.portal.run(store.read_run_events("other")) == []
    finally:
        app.close()


def test_a_finished_run_whose_event_was_lost_still_ends_its_stream(store_url: str) -> None:
    app = make_app(store_url)
    try:
        app.run_events.on_run_end = _drop  # type: ignore[method-assign]  # a worker that died
        app.executor.listeners[:] = [_drop]
        info = app.run("counter", {"n": 1})
        app.signal(info.id, "go", {})
        app.run("counter", run_id=info.id)
        events = list(tether.RunHandle(app, info.id).events())
        assert events[-1].kind == "finished" and events[-1].data == {"status": "succeeded"}
    finally:
        app.close()


async def _drop(run_id: str, status: str) -> None:
    await asyncio.sleep(0)


def test_sse_endpoint_streams_and_resumes_after_last_event_id(store_url: str) -> None:
    import json

    from fastapi.testclient import TestClient

    from tether.server import create_app
    from tether.server.auth import Auth

    app = make_app(store_url)
    try:
        info = app.run("counter", {"n": 1})
        app.signal(info.id, "go", {})
        app.run("counter", run_id=info.id)
        with TestClient(create_app(app, auth=Auth(local_user="tester"))) as http:

            def read(headers: dict[str, str]) -> list[dict[str, Any]]:
                with http.stream("GET", f"/api/runs/{info.id}/events",
                                 headers=headers) as response:
                    assert response.status_code == 200
                    assert response.headers["content-type"].startswith("text/event-stream")
                    return [json.loads(line[6:]) for line in response.iter_lines()
                            if line.startswith("data: ")]

            everything = read({})
            assert everything[-1]["kind"] == "finished"
            rest = read({"Last-Event-ID": str(everything[3]["id"])})
            assert rest == everything[4:]
            assert http.get("/api/runs/nope/events").status_code == 404
    finally:
        app.close()


def test_a_long_step_is_seen_starting_while_it_runs(store_url: str) -> None:
    """A watcher sees a step start before it ends, and each step's start and end once, in
    order — also on a store that reads a step's events from its journal row."""
    app = tether.App(store_url)
    release = asyncio.Event()
    seen: list[Any] = []

    @app.step()
    async def slow() -> str:
        await release.wait()
        return "done"

    @app.step()
    async def fast(x: int) -> int:
        return x

    @app.workflow(name="long")
    async def long(ctx: tether.Context) -> str:
        await fast(1)
        out = await slow()
        await fast(2)
        return out

    async def scenario() -> tether.RunInfo:
        running = asyncio.create_task(app.run_async("long", run_id="long-1"))
        handle = tether.RunHandle(app, "long-1")
        async for event in handle.events():
            seen.append(event)
            if (event.kind, event.seq) == ("step_started", 2):
                assert not running.done()
                release.set()  # only now: the start was visible while the step ran
        return await running

    try:
        assert app.portal.run(scenario()).output == "done"
        assert kinds(seen) == [
            ("run_started", None), ("step_started", 1), ("step_completed", 1),
            ("step_started", 2), ("step_completed", 2), ("step_started", 3),
            ("step_completed", 3), ("finished", None)]
        assert [e.id for e in seen] == sorted({e.id for e in seen})
        assert seen[3].data["name"].endswith("slow") and seen[4].data["attempts"] == 1
    finally:
        app.close()


def test_parallel_steps_and_a_failure_each_stream_once_in_order(store_url: str) -> None:
    app = tether.App(store_url)

    @app.step()
    async def nap(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    @app.step(retry=tether.Retry(max_attempts=1))
    async def broken() -> None:
        raise ValueError("no such customer")

    @app.workflow(name="fan")
    async def fan(ctx: tether.Context) -> list[float]:
        done = await asyncio.gather(nap(0.03), nap(0.0), nap(0.015))
        try:
            await broken()
        except tether.StepFailed:
            pass
        return list(done)

    try:
        info = app.run("fan", {})
        events = list(tether.RunHandle(app, info.id).events())
        ids = [e.id for e in events]
        assert ids == sorted(set(ids))
        for seq in (1, 2, 3):
            mine = [e.kind for e in events if e.seq == seq]
            assert mine == ["step_started", "step_completed"], (seq, kinds(events))
        # The quick step ended first, and the stream says so.
        completed = [e.seq for e in events if e.kind == "step_completed"]
        assert completed[0] == 2
        failed = [e for e in events if e.seq == 4]
        assert [e.kind for e in failed] == ["step_started", "step_failed"]
        assert failed[1].data["error"] == {"type": "ValueError", "message": "no such customer"}
        # Read again from each position: exactly the rest, every time.
        for i, event in enumerate(events):
            rest = list(tether.RunHandle(app, info.id).events(after=event.id, follow=False))
            assert [e.id for e in rest] == ids[i + 1:]
    finally:
        app.close()


def test_a_step_run_again_after_a_lost_worker_streams_its_start_once(store_url: str) -> None:
    """The step's start was appended while it ran on a worker that then lost the run; run
    again elsewhere it ends at once. The stream shows that start once, and one completion."""
    first = tether.App(store_url, lease_seconds=0.3)
    second = tether.App(store_url, lease_seconds=0.3)
    attempts: list[str] = []

    def define(app: tether.App) -> None:
        @app.step()
        async def work() -> str:
            attempts.append(app.store.url)
            if len(attempts) == 1:  # the first time: until its start is in the stream
                async for event in tether.RunHandle(app, "lost-1").events():
                    if event.kind == "step_started" and event.seq == 2:
                        break
            return "ok"

        @app.step()
        async def prepare() -> int:
            return 1

        @app.workflow(name="lost")
        async def lost(ctx: tether.Context) -> str:
            await prepare()
            return await work()

    define(first)
    define(second)
    real_write = first.store.write_step

    async def store_goes_away(run_id: str, token: int, step: StepRecord, **kwargs: Any) -> bool:
        if step.seq == 2:
            raise tether.StoreUnavailable("database went away")
        return await real_write(run_id, token, step, **kwargs)

    first.store.write_step = store_goes_away  # type: ignore[method-assign]
    try:
        assert first.run("lost", run_id="lost-1").status == "running"  # dropped
        deadline = time.monotonic() + 30
        while (info := second.run("lost", run_id="lost-1")).status != "succeeded":
            assert time.monotonic() < deadline, info.status
            time.sleep(0.05)
        assert len(attempts) == 2
        events = list(tether.RunHandle(second, "lost-1").events())
        assert [e.kind for e in events if e.seq == 2] == ["step_started", "step_completed"]
        ids = [e.id for e in events]
        assert ids == sorted(set(ids))
    finally:
        first.close()
        second.close()


@pytest.mark.timeout(30)
def test_a_reader_resuming_after_the_finished_event_is_told_the_stream_ended(
    store_url: str,
) -> None:
    """A browser's EventSource reconnects with the last id it saw when the stream closes, i.e.
    after ``finished``: it must get 204 (stop reconnecting), not a stream held open forever and
    polling the store; `handle.events(after=…)` past the end ends likewise."""
    from fastapi.testclient import TestClient

    from tether.server import create_app
    from tether.server.auth import Auth

    app = make_app(store_url)
    try:
        info = app.run("counter", {"n": 1})
        app.signal(info.id, "go", {})
        app.run("counter", run_id=info.id)
        last = list(tether.RunHandle(app, info.id).events())[-1]
        assert last.kind == "finished"
        assert list(tether.RunHandle(app, info.id).events(after=last.id)) == []
        with TestClient(create_app(app, auth=Auth(local_user="tester"))) as http:
            for headers, query in (({"Last-Event-ID": str(last.id)}, ""), ({}, f"?after={last.id}")):
                with http.stream("GET", f"/api/runs/{info.id}/events{query}",
                                 headers=headers) as response:
                    assert response.status_code == 204
                    assert response.read() == b""
    finally:
        app.close()


@pytest.mark.timeout(30)
async def test_an_async_reader_resuming_after_the_end_stops(store_url: str) -> None:
    app = make_app(store_url)
    try:
        info = await app.run_async("counter", {"n": 1})
        await app.signal_async(info.id, "go", {})
        await app.run_async("counter", run_id=info.id)
        events = [e async for e in tether.RunHandle(app, info.id).events()]
        assert events[-1].kind == "finished"
        assert [e async for e in tether.RunHandle(app, info.id).events(after=events[-1].id)] == []
    finally:
        await app.store.close()
