"""Bring-your-own-agent benchmark: a plain pydantic-ai agent made durable by tether.

1. **Durability overhead.** N concurrent runs (default 500) of one pydantic-ai agent with four
   function tools and structured output: 5 model requests per run (the fake provider calls
   each offered tool once, then answers), each answered after a fixed latency (200 ms), by the
   fake OpenAI-compatible provider in its own process. Sides, in the same process run, against
   the same server:

   * ``plain`` — the agent without durability, ``asyncio.gather`` of ``agent.run``;
   * ``floor`` — the same agent with a durability capability that journals nothing (built on
     the same pydantic-ai surface as ``TetherDurability``, same engine spec and codec, every
     durable unit executed directly): what pydantic-ai's durable layer costs any engine
     built on it, before the engine does any work;
   * ``lean floor`` — the floor without the two parts of that layer ``TetherDurability`` skips
     (it binds the four model operations once per model rather than per request, and asks the
     core for no per-attempt copy of the tool definitions): the floor tether stands on;
   * ``tether`` — the same agent with ``TetherDurability(app)``, registered with
     ``app.register(agent)`` and executed by a worker (concurrency N) on SQLite: every model
     request and tool call a journaled step (targets: <= 1.10x plain, and faster than DBOS);
   * ``tether.Agent`` — the same agent written as `tether.Agent` (its own loop);
   * ``dbos`` — the same agent with pydantic-ai's ``DBOSDurability``, each run a
     ``@DBOS.workflow`` on a SQLite system database, ``asyncio.gather`` of N (when ``dbos`` is
     installed: ``pip install -e '.[bench]'``).

2. **First streamed delta to an SSE client.** R runs one after another, each streaming a text
   answer (the provider writes a word every 50 ms); a `tether worker` process executes them
   and a `tether serve` process serves ``GET /api/runs/{id}/events``; a client reads the SSE
   stream. Latency = time the client read the first ``model_text_delta`` minus the time the provider
   wrote that chunk (same machine, same clock). Target: p95 <= 50 ms.

Every side is warmed up with a few runs before the timed repetitions (the DBOS process before
its timed runs), starts after a full garbage collection, and prints its CPU time and the part of
it spent in the garbage collector (with 500 agent runs alive at once, a third of the CPU).

Run from the repository root: ``python bench/bench_byoa.py [--runs 500] [--reps 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pydantic

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from bench.bench_agents import Provider, _pythonpath, close_clients, openai_model  # noqa: E402

CALLS_PER_RUN = 5
WARM_UP_RUNS = 5


class Answer(pydantic.BaseModel):
    summary: str
    sources: int


def lookup_order(order_id: str) -> dict[str, str]:
    """Look an order up."""
    return {"id": order_id, "status": "shipped"}


def lookup_customer(email: str) -> dict[str, str]:
    """Look a customer up."""
    return {"email": email, "tier": "gold"}


def search_docs(query: str) -> list[str]:
    """Search the help center."""
    return [f"article about {query}"]


def check_stock(sku: str) -> int:
    """Units in stock."""
    return 7


TOOLS = [lookup_order, lookup_customer, search_docs, check_stock]


def pydantic_agent(url: str, capabilities: list[Any] | None = None) -> Any:
    from pydantic_ai import Agent

    return Agent(openai_model(url), name="support", instructions="Help the customer.",
                 tools=TOOLS, output_type=Answer, capabilities=capabilities or [])


# --- 1. overhead ----------------------------------------------------------------------------------


def floor_capability(lean: bool = False) -> Any:
    """A durability capability on pydantic-ai's public engine surface that journals nothing:
    each durable unit runs at once. Same engine spec as `TetherDurability` (its codec, sequential
    tools, wrapped toolset kinds). `lean`: also what `TetherDurability` skips of the layer (the
    four model operations bound once per model, not per request; no per-attempt copy of the
    tool definitions), so the floor tether itself stands on."""
    from pydantic_ai.durable_exec import (
        BaseDurabilityCapability,
        JournalCallableOperationBackend,
        RoleBasedOperationConfig,
    )

    import tether

    class Direct(JournalCallableOperationBackend[dict[str, Any]]):
        async def execute(self, *, operation_id: Any, name: str, body: Any, cache_key: Any,
                          config: Any) -> object:
            return await body()

    class Floor(BaseDurabilityCapability[Any]):
        engine_spec = tether.TetherDurability.engine_spec

        def __init__(self) -> None:
            super().__init__()
            self._backend: tuple[object, Direct] | None = None
            self._bound: dict[tuple[str | None, str], Any] = {}

        @property
        def in_durable_context(self) -> bool:
            return True

        def get_durable_operation_backend(self) -> Direct:
            # One per capability copy, as `TetherDurability` keeps it.
            if self._backend is None or self._backend[0] is not self:
                self._backend = (self, Direct(
                    agent_name=self.name, default_model_id=self.default_model_id,
                    config=RoleBasedOperationConfig(model={}, event={}, capability={}, tool={})))
                self._bound = {}
            return self._backend[1]

    class LeanFloor(Floor):
        @property
        def _has_prepare_model_request(self) -> bool:
            return False

        def _bind_model_operations(self, backend: Any, *, model_id: str | None,
                                   model_name: str) -> Any:
            key = (model_id, model_name)
            found = self._bound.get(key)
            if found is None:
                found = self._bound[key] = super()._bind_model_operations(  # pyright: ignore[reportPrivateUsage]
                    backend, model_id=model_id, model_name=model_name)
            return found

    return LeanFloor() if lean else Floor()


async def run_plain(url: str, runs: int, floor: bool = False, lean: bool = False) -> float:
    agent = pydantic_agent(url, [floor_capability(lean)] if floor else None)
    started = time.perf_counter()
    await asyncio.gather(*(agent.run(f"question {i}") for i in range(runs)))
    elapsed = time.perf_counter() - started
    await close_clients()
    return elapsed


async def _worker_side(app: Any, workflow: str, inputs: list[dict[str, Any]]) -> float:
    finished = 0
    all_done = asyncio.Event()
    failures: list[str] = []

    async def on_end(run_id: str, status: str) -> None:
        nonlocal finished
        if status in ("succeeded", "failed", "refused", "cancelled"):
            finished += 1
            if status != "succeeded":
                failures.append(f"{run_id}: {status}")
            if finished == len(inputs):
                all_done.set()

    app.executor.listeners.append(on_end)
    stop = asyncio.Event()
    started = time.perf_counter()
    for data in inputs:
        await app.start_async(workflow, data)
    worker = asyncio.create_task(app.run_worker_async(concurrency=len(inputs), stop=stop))
    await all_done.wait()
    elapsed = time.perf_counter() - started
    stop.set()
    await worker
    await app.store.close()
    await close_clients()
    if failures:
        run = await app.get_run_async(failures[0].split(":")[0])
        raise RuntimeError(f"{len(failures)} runs did not succeed, e.g. {failures[0]}: "
                           f"{run.error}")
    return elapsed


async def run_tether(url: str, runs: int, folder: Path) -> float:
    import tether

    app = tether.App(f"sqlite:///{folder / 'bench.db'}")
    app.register(pydantic_agent(url, [tether.TetherDurability(app, stream=False)]))
    return await _worker_side(app, "support", [{"prompt": f"question {i}"} for i in range(runs)])


async def run_tether_agent(url: str, runs: int, folder: Path) -> float:
    import tether

    app = tether.App(f"sqlite:///{folder / 'bench.db'}")
    app.register(tether.Agent("support", openai_model(url), "Help the customer.",
                              tools=[tether.tool(t) for t in TOOLS], output_type=Answer))
    return await _worker_side(app, "support", [{"q": f"question {i}"} for i in range(runs)])


def run_dbos(url: str, runs: int, folder: Path) -> tuple[float, float, float] | None:
    """In a process of its own: DBOS keeps process-global state."""
    proc = subprocess.run(
        [sys.executable, __file__, "--role", "dbos", "--url", url, "--runs", str(runs),
         "--dir", str(folder)],
        env={**os.environ, "PYTHONPATH": _pythonpath()}, capture_output=True, text=True,
        timeout=1200, check=False)
    if proc.returncode != 0:
        if "No module named 'dbos'" in proc.stderr:
            return None
        raise RuntimeError(f"dbos side failed: {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(out["elapsed"]), float(out["cpu"]), float(out["gc_cpu"])


def dbos_role(url: str, runs: int, folder: Path) -> None:
    import logging

    from dbos import DBOS
    from pydantic_ai.durable_exec.dbos import DBOSDurability

    logging.getLogger("dbos").setLevel(logging.WARNING)
    agent = pydantic_agent(url, [DBOSDurability()])

    @DBOS.workflow()
    async def support(prompt: str) -> dict[str, Any]:
        result = await agent.run(prompt)
        return result.output.model_dump()

    DBOS(config={"name": "bench-byoa", "log_level": "WARNING",
                 "system_database_url": f"sqlite:///{folder / 'dbos.sqlite'}"})
    DBOS.launch()

    async def main() -> float:
        # Warm-up, as the in-process sides get: first-use costs (lazy imports, type adapters)
        # are not what is compared.
        await asyncio.gather(*(support(f"warm-up {i}") for i in range(WARM_UP_RUNS)))
        started = time.perf_counter()
        await asyncio.gather(*(support(f"question {i}") for i in range(runs)))
        elapsed = time.perf_counter() - started
        await close_clients()
        return elapsed

    collecting = [0.0, 0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collecting[0] = time.process_time()
        else:
            collecting[1] += time.process_time() - collecting[0]

    gc.collect()
    gc.callbacks.append(on_gc)
    before = time.process_time()
    elapsed = asyncio.run(main())
    used = time.process_time() - before
    DBOS.destroy()
    print(json.dumps({"elapsed": elapsed, "cpu": used, "gc_cpu": collecting[1]}))


def overhead(runs: int, latency: float, reps: int, with_dbos: bool) -> dict[str, Any]:
    provider = Provider(latency)
    sides: dict[str, list[float]] = {"plain": [], "floor": [], "lean floor": [], "tether": [],
                                     "tether.Agent": [], "dbos": []}
    cpu: dict[str, list[float]] = {k: [] for k in sides}
    gc_cpu: dict[str, list[float]] = {k: [] for k in sides}
    collecting = [0.0, 0.0]  # (started, total) of the collector's CPU time

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collecting[0] = time.process_time()
        else:
            collecting[1] += time.process_time() - collecting[0]

    gc.callbacks.append(on_gc)

    def timed(side: str, fn: Any) -> float:
        gc.collect()  # what an earlier side left behind is not collected on this side's clock
        before, collected = time.process_time(), collecting[1]
        elapsed = fn()
        cpu[side].append(time.process_time() - before)
        gc_cpu[side].append(collecting[1] - collected)
        return elapsed

    try:
        # Warm-up: each in-process side runs a few agents first, so the first side timed does
        # not pay the process's first-use costs (lazy imports, type adapters) for the others.
        asyncio.run(run_plain(provider.url, WARM_UP_RUNS))
        asyncio.run(run_plain(provider.url, WARM_UP_RUNS, floor=True))
        asyncio.run(run_plain(provider.url, WARM_UP_RUNS, floor=True, lean=True))
        with tempfile.TemporaryDirectory(prefix="bench-byoa-") as folder:
            asyncio.run(run_tether(provider.url, WARM_UP_RUNS, Path(folder)))
        with tempfile.TemporaryDirectory(prefix="bench-byoa-") as folder:
            asyncio.run(run_tether_agent(provider.url, WARM_UP_RUNS, Path(folder)))
        for rep in range(reps):  # alternate, so drift on a noisy machine hits every side
            before = provider.stats()["answered"]
            sides["plain"].append(timed("plain", lambda: asyncio.run(run_plain(provider.url, runs))))
            sides["floor"].append(timed("floor", lambda: asyncio.run(
                run_plain(provider.url, runs, floor=True))))
            sides["lean floor"].append(timed("lean floor", lambda: asyncio.run(
                run_plain(provider.url, runs, floor=True, lean=True))))
            with tempfile.TemporaryDirectory(prefix="bench-byoa-") as folder:
                sides["tether"].append(timed("tether", lambda: asyncio.run(
                    run_tether(provider.url, runs, Path(folder)))))
            with tempfile.TemporaryDirectory(prefix="bench-byoa-") as folder:
                sides["tether.Agent"].append(timed("tether.Agent", lambda: asyncio.run(
                    run_tether_agent(provider.url, runs, Path(folder)))))
            expected = 5 * runs * CALLS_PER_RUN
            if with_dbos:
                with tempfile.TemporaryDirectory(prefix="bench-byoa-dbos-") as folder:
                    took = run_dbos(provider.url, runs, Path(folder))
                if took is not None:
                    sides["dbos"].append(took[0])
                    cpu["dbos"].append(took[1])
                    gc_cpu["dbos"].append(took[2])
                    expected += (runs + WARM_UP_RUNS) * CALLS_PER_RUN
            answered = provider.stats()["answered"] - before
            # More is a durable side's retry of a request that failed under load (a timeout):
            # at-least-once for calls that did not complete, never a completed call again.
            assert answered >= expected, f"rep {rep}: {answered} requests, expected {expected}"
            print("  rep " + str(rep + 1) + ": " + ", ".join(
                f"{k} {v[-1]:.2f}s (cpu {cpu[k][-1]:.1f}s, gc {gc_cpu[k][-1]:.1f}s)"
                for k, v in sides.items() if v)
                + (f" ({answered - expected} retried request(s))" if answered > expected
                   else "") + f"; load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        provider.close()

    def mid(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    result: dict[str, Any] = {"runs": runs, "latency_s": latency, "reps": sides,
                              "latency_floor_s": CALLS_PER_RUN * latency}
    for side, values in sides.items():
        if values:
            result[f"{side}_s"] = mid(values)
            result[f"{side}_cpu_s"] = mid(cpu[side])
            result[f"{side}_gc_cpu_s"] = mid(gc_cpu[side])
    result["tether_vs_plain"] = result["tether_s"] / result["plain_s"]
    result["floor_vs_plain"] = result["floor_s"] / result["plain_s"]
    result["tether_vs_floor"] = result["tether_s"] / result["floor_s"]
    result["floor_cpu_vs_plain"] = result["floor_cpu_s"] / result["plain_cpu_s"]
    result["lean_floor_vs_plain"] = result["lean floor_s"] / result["plain_s"]
    result["tether_vs_lean_floor"] = result["tether_s"] / result["lean floor_s"]
    result["tether_agent_vs_plain"] = result["tether.Agent_s"] / result["plain_s"]
    result["tether_cpu_vs_plain"] = result["tether_cpu_s"] / result["plain_cpu_s"]
    if "dbos_s" in result:
        result["tether_vs_dbos"] = result["tether_s"] / result["dbos_s"]
        result["tether_cpu_vs_dbos"] = result["tether_cpu_s"] / result["dbos_cpu_s"]
    # Ratios within each repetition (the sides ran back to back), then their median: steadier
    # than ratios of medians when the machine's load drifts between repetitions.
    pairs = [("tether", "plain"), ("floor", "plain"), ("lean floor", "plain"), ("tether", "floor"),
             ("tether", "lean floor"), ("tether", "dbos"), ("tether.Agent", "plain")]
    for a, b in pairs:
        if sides[a] and len(sides[b]) == len(sides[a]):
            result[f"paired_{a}_vs_{b}"] = mid([x / y for x, y in zip(sides[a], sides[b], strict=True)])
            result[f"paired_{a}_cpu_vs_{b}"] = mid(
                [x / y for x, y in zip(cpu[a], cpu[b], strict=True)])
    return result


# --- 2. first delta over SSE ----------------------------------------------------------------------


STREAM_APP = "bench.bench_byoa:stream_app"


def _make_stream_app() -> Any:
    import tether

    app = tether.App()
    url = os.environ.get("BYOA_BENCH_PROVIDER", "")
    if url:
        from pydantic_ai import Agent

        app.register(Agent(openai_model(url), name="writer",
                           capabilities=[tether.TetherDurability(app)]))
    return app


stream_app = _make_stream_app() if os.environ.get("BYOA_BENCH_PROVIDER") else None


def first_delta(runs: int) -> dict[str, Any]:
    import httpx
    from tests.conftest import free_port
    from tests.fake_provider import FakeProvider

    import tether

    words = " ".join(f"word{i}" for i in range(20))
    provider = FakeProvider(lambda request: {"content": words}).start()
    provider.stream_delay = 0.05
    folder = Path(tempfile.mkdtemp(prefix="bench-byoa-sse-"))
    store = f"sqlite:///{folder / 'sse.db'}"
    env = {**os.environ, "PYTHONPATH": _pythonpath(), "BYOA_BENCH_PROVIDER": provider.url}
    port = free_port()
    worker = subprocess.Popen([sys.executable, "-m", "tether", "worker", "--app", STREAM_APP,
                               "--store", store], cwd=ROOT, env=env)
    # --create: the worker, started a moment before, may not have created the file yet.
    server = subprocess.Popen([sys.executable, "-m", "tether", "serve", "--port", str(port),
                               "--store", store, "--create"], cwd=ROOT, env=env,
                              stderr=subprocess.DEVNULL)
    client = tether.App(store)
    base = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("tether serve did not start")
            time.sleep(0.05)
        for i in range(runs):
            sent_before = len(provider.text_chunks_sent)
            run_id = client.start("writer", {"prompt": f"write {i}"}).id
            received: float | None = None
            with httpx.stream("GET", f"{base}/api/runs/{run_id}/events", timeout=60) as stream:
                for line in stream.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    kind = json.loads(line[6:])["kind"]
                    if received is None and kind == "model_text_delta":
                        received = time.time()
                    if kind == "finished":
                        break
            assert received is not None, f"run {run_id}: no text delta on the stream"
            emitted = provider.text_chunks_sent[sent_before][0]
            latencies.append(received - emitted)
    finally:
        for proc in (worker, server):
            proc.terminate()
            proc.wait(10)
        provider.stop()
    latencies.sort()
    return {"runs": runs, "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p95_ms": 1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
            "max_ms": 1000 * latencies[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sse-runs", type=int, default=40)
    parser.add_argument("--no-dbos", action="store_true")
    parser.add_argument("--only", default="1,2")
    parser.add_argument("--role", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "dbos":
        dbos_role(args.url, args.runs, Path(args.dir))
        return
    only = {int(x) for x in args.only.split(",")}
    print(f"load average at start: {os.getloadavg()}", flush=True)
    if 1 in only:
        print(f"1. {args.runs} concurrent runs x {CALLS_PER_RUN} model requests, "
              f"{args.latency * 1000:.0f} ms per request", flush=True)
        result = overhead(args.runs, args.latency, args.reps, not args.no_dbos)
        print(json.dumps({k: v for k, v in result.items() if k != "reps"}, indent=2))
    if 2 in only:
        print(f"2. first streamed text delta reaching an SSE client ({args.sse_runs} runs)",
              flush=True)
        print(json.dumps(first_delta(args.sse_runs), indent=2))
    print(f"load average at end: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
