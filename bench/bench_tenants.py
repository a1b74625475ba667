"""Queues, provider rate limits and child runs (issue 13), in one process with in-process
workers, on SQLite (default) or the store given with --store.

1. Fairness: 2,000 runs of 5 tenants, one bursting 1,500 first, per-tenant limit 20: every
   other tenant's p95 queue wait (start to first claim) ≤ 2 s.
2. Rate limit: N agent runs against a fake provider answering 429 above L requests per P
   seconds, app limit L per P: 0 answered 429 and total time ≤ 1.1x the ideal
   ((N - 1) // L x P: the last request cannot go earlier).
3. Fan-out: a parent starting 100 child runs (one step each) and waiting for all of them,
   against one run doing the 100 steps inline: ≤ 1.5x.

    python bench/bench_tenants.py [--store URL] [--quick] [--only 1,3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Report, fmt, fresh_dir, section

import tether
from tether.observe.stats import percentile


async def _workers(stack: AsyncExitStack, apps: list[tether.App], concurrency: int) -> None:
    for app in apps:
        stop = asyncio.Event()
        task = asyncio.create_task(app.run_worker_async(concurrency=concurrency, stop=stop,
                                                        grace_period=2))

        async def close(stop: asyncio.Event = stop, task: asyncio.Task[None] = task) -> None:
            stop.set()
            await asyncio.wait_for(task, 30)

        stack.push_async_callback(close)


def _app(url: str) -> tether.App:
    app = tether.App(url)
    app.queue("tenants", per_key=20)

    @app.step
    async def work(i: int, pause: float = 0.02) -> int:
        if pause:
            await asyncio.sleep(pause)
        return i

    @app.workflow
    async def job(ctx: tether.Context, i: int, pause: float = 0.02) -> int:
        return await work(i, pause)

    @app.workflow
    async def fanout(ctx: tether.Context, n: int, pause: float) -> int:
        children = [await ctx.start_child("job", {"i": i, "pause": pause}) for i in range(n)]
        return sum([await c.result() for c in children])

    @app.workflow
    async def inline(ctx: tether.Context, n: int, pause: float) -> int:
        return sum([await work(i, pause) for i in range(n)])

    return app


async def fairness(url: str, total: int, burst: int) -> dict[str, float]:
    apps = [_app(url), _app(url)]
    tenants = ["acme", "beta", "gamma", "delta", "eps"]
    ids: dict[str, list[str]] = {t: [] for t in tenants}
    async with AsyncExitStack() as stack:
        # The workers run while the burst arrives, then the other tenants' runs behind it.
        await _workers(stack, apps, 100)
        # Started 100 at a time, so the burst arrives faster than it can run.
        keys = ["acme"] * burst + [tenants[1 + n % 4] for n in range(total - burst)]
        for chunk in range(0, total, 100):
            batch = keys[chunk:chunk + 100]
            handles = await asyncio.gather(*(
                apps[0].start_async("job", {"i": 0}, queue="tenants", key=key) for key in batch))
            for key, handle in zip(batch, handles, strict=True):
                ids[key].append(handle.id)
        for run_ids in ids.values():
            for run_id in run_ids:
                await _result(apps[0], run_id)
    waits: dict[str, float] = {}
    for tenant, run_ids in ids.items():
        values = []
        for run_id in run_ids:
            run = await apps[0].store.get_run(run_id)
            assert run is not None and run.started_at is not None
            values.append(run.started_at - run.created_at)
        waits[tenant] = percentile(values, 95) or 0.0
    for app in apps:
        app.close()
    return waits


async def _result(app: tether.App, run_id: str) -> Any:
    from tether.engine.handles import RunHandle

    return await RunHandle(app, run_id).result_async(timeout=600)


async def rate_limited(url: str, runs: int, limit: int, per: float) -> tuple[int, float, float]:
    from tests.fake_provider import FakeProvider

    with FakeProvider() as server:
        server.rate_limit = (limit, per)
        apps = []
        for _ in range(2):
            app = tether.App(url)
            app.rate_limit("openai:*", requests=limit, per=timedelta(seconds=per))
            app.register(tether.Agent("writer", server.model(), "Write one line.",
                                      retry=tether.Retry(max_attempts=1)))
            apps.append(app)
        handles = [await apps[0].start_async("writer", {"prompt": str(i)}) for i in range(runs)]
        started = time.monotonic()
        async with AsyncExitStack() as stack:
            await _workers(stack, apps, 200)
            for handle in handles:
                await handle.result_async(timeout=3600)
        elapsed = time.monotonic() - started
        for app in apps:
            app.close()
        ideal = ((runs - 1) // limit) * per
        return server.rate_limited, elapsed, ideal


async def fan_out(url: str, n: int, pause: float) -> tuple[float, float]:
    app = _app(url)
    async with AsyncExitStack() as stack:
        await _workers(stack, [app], 200)
        started = time.monotonic()
        await (await app.start_async("inline", {"n": n, "pause": pause})).result_async(
            timeout=600)
        inline = time.monotonic() - started
        started = time.monotonic()
        await (await app.start_async("fanout", {"n": n, "pause": pause})).result_async(
            timeout=600)
        fanned = time.monotonic() - started
    app.close()
    return fanned, inline


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="1,2,3")
    args = parser.parse_args()
    only = {int(x) for x in args.only.split(",")}
    report = Report("issue 13: queues, rate limits, child runs", [])
    print(f"load average at start: {os.getloadavg()}")
    with fresh_dir() as tmp:
        def url(name: str) -> str:
            return args.store or f"sqlite:///{tmp / name}.db"

        if 1 in only:
            total, burst = (400, 300) if args.quick else (2000, 1500)
            section(f"1. fairness: {total} runs of 5 tenants, acme bursting {burst}, per_key 20")
            waits = asyncio.run(fairness(url("fair"), total, burst))
            others = max(v for k, v in waits.items() if k != "acme")
            print({k: round(v, 2) for k, v in waits.items()})
            report.add("other tenants' p95 queue wait", "≤ 2 s", f"{fmt(others)} s", others <= 2)
        if 2 in only:
            runs, limit, per = (60, 20, 6.0) if args.quick else (1000, 300, 60.0)
            section(f"2. rate limit: {runs} agent runs, provider and app limit {limit}/{per:g}s")
            rejected, elapsed, ideal = asyncio.run(rate_limited(url("rate"), runs, limit, per))
            report.add("requests answered 429", "0", str(rejected), rejected == 0)
            ratio = elapsed / ideal if ideal else float("inf")
            report.add("total time / ideal", "≤ 1.1x", f"{fmt(ratio)}x ({fmt(elapsed)} s)",
                       ratio <= 1.1)
        if 3 in only:
            for pause in (0.02, 0.0):
                section(f"3. fan-out: 100 child runs against 100 inline steps of {pause:g} s")
                fanned, inline = asyncio.run(fan_out(url(f"fan{pause:g}"), 100, pause))
                ratio = fanned / inline
                report.add(f"fan-out / inline, steps of {pause:g} s", "≤ 1.5x",
                           f"{fmt(ratio)}x ({fmt(fanned)} s vs {fmt(inline)} s)", ratio <= 1.5)
    print(f"load average at end: {os.getloadavg()}")
    report.print()


if __name__ == "__main__":
    main()
