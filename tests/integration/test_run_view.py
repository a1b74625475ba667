"""`app.run` returns the run as the store holds it: its RunInfo is the one `get_run` reads
afterwards, for every kind of journal entry (the finished run is not read back in full)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import tether


def make_app(url: str) -> tether.App:
    app = tether.App(url)
    flaky_calls: list[int] = []

    @app.step()
    async def fetch(name: str) -> dict[str, Any]:
        return {"name": name, "tags": ("a", "b")}  # a tuple is journaled as a list

    @app.step(retry=tether.Retry(max_attempts=3, initial_delay=0.0))
    async def flaky() -> int:
        flaky_calls.append(1)
        if len(flaky_calls) == 1:
            raise ConnectionError("reset")
        return len(flaky_calls)

    @app.step(retry=tether.Retry(max_attempts=1))
    def broken() -> None:
        raise ValueError("bad row")

    @app.workflow(name="rich")
    async def rich(ctx: tether.Context, who: str) -> dict[str, Any]:
        page = await fetch(who)
        tries = await flaky()
        try:
            await broken()
        except tether.StepFailed:
            pass
        stamp = ctx.now()
        ident = ctx.uuid()
        await ctx.sleep(timedelta(seconds=0))
        early = await ctx.wait_for_signal("early")  # sent before the run started
        which, payload = await ctx.wait_for_any(["yes", "no"])
        late = await ctx.wait_for_signal("late", timeout=timedelta(days=1))  # suspends
        return {"page": page, "tries": tries, "stamp": stamp.isoformat(), "id": str(ident),
                "early": early, "which": which, "payload": payload, "late": late}

    @app.workflow(name="doomed")
    async def doomed(ctx: tether.Context) -> None:
        await fetch("x")
        await broken()

    return app


def as_dict(info: tether.RunInfo) -> dict[str, Any]:
    return dataclasses.asdict(info)


def test_what_app_run_returns_is_what_get_run_reads(store_url: str) -> None:
    app = make_app(store_url)
    try:
        handle = app.start("rich", {"who": "acme"}, run_id="rich-1")
        app.signal(handle.id, "early", {"n": 1})
        app.signal(handle.id, "no", ["x"])
        waiting = app.run("rich", run_id="rich-1")
        assert waiting.status == "waiting"
        assert as_dict(waiting) == as_dict(app.get_run("rich-1"))
        app.signal(handle.id, "late", "there")
        done = app.run("rich", run_id="rich-1")
        assert done.status == "succeeded"
        assert done.output["late"] == "there" and done.output["page"]["tags"] == ["a", "b"]
        assert [s.status for s in done.steps].count("failed") == 1
        assert as_dict(done) == as_dict(app.get_run("rich-1"))

        failed = app.run("doomed")
        assert failed.status == "failed" and failed.error["type"] == "StepFailed"
        assert as_dict(failed) == as_dict(app.get_run(failed.id))
    finally:
        app.close()


def test_app_run_reads_nothing_back_from_the_store(store_url: str) -> None:
    """The run's row comes from the statement that finished it, the journal from what the run
    wrote: a run started and finished by `app.run` costs the store no read."""
    app = make_app(store_url)
    reads: list[str] = []
    try:
        app.run("doomed")  # warm: the store is open, the schema migrated
        store: Any = app.store
        for name in ("get_run", "load_run", "load_steps"):
            def counted(*args: Any, _name: str = name, _read: Any = getattr(store, name)) -> Any:
                reads.append(_name)
                return _read(*args)

            setattr(store, name, counted)
        failed = app.run("doomed")
        assert reads == []
        assert failed.status == "failed" and [s.name for s in failed.steps] == ["fetch", "broken"]
        assert as_dict(failed) == as_dict(app.get_run(failed.id))
    finally:
        app.close()
