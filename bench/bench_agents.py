"""Agents benchmark: durability overhead, and model calls re-paid after a worker is killed.

1. **Throughput.** N concurrent Titanium-shaped pipelines (research with two tools → plan →
   case studies with a tool → select → draft: 8 model requests each) against the local fake
   OpenAI-compatible provider answering every request after a fixed latency (default 200 ms).
   Once with tether (every model request and tool call journaled in SQLite, one worker with
   concurrency N) and once with the same agents in plain pydantic-ai (no durability), in the
   same process run, against the same server. Target: tether wall time <= 1.05x plain.
2. **Kill.** R concurrent pipelines; the process running them is SIGKILLed when about half of
   the model requests were answered, then a new one finishes them. Counted at the server:
   requests beyond what an uninterrupted run needs, and of those, how many had already been
   *answered* before the kill (completed calls paid twice). tether resumes from the journal;
   LangGraph (SQLite checkpointer, durability "sync") re-runs each in-flight node.

Run from the repository root: ``python bench/bench_agents.py [--runs 1000] [--kill-runs 20]``.
The fake provider runs in its own process so its CPU does not count against either side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pydantic

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

CALLS_PER_RUN = 8


# --- the Titanium-shaped agents -----------------------------------------------------------


class Profile(pydantic.BaseModel):
    name: str
    industry: str
    challenges: list[str]


class Plan(pydantic.BaseModel):
    queries: list[str]


class Candidates(pydantic.BaseModel):
    ids: list[str]


class Selection(pydantic.BaseModel):
    ids: list[str]
    rationale: str


class Draft(pydantic.BaseModel):
    to: str
    subject: str
    body: str


def search_companies(query: str) -> list[dict[str, str]]:
    """Search companies."""
    return [{"name": query, "industry": "manufacturing"}]


def get_company(name: str) -> dict[str, Any]:
    """One company's record."""
    return {"name": name, "industry": "manufacturing", "challenges": ["telemetry"]}


def search_case_studies(query: str) -> list[dict[str, str]]:
    """Search case studies."""
    return [{"id": "cs-101", "title": "Predictive maintenance"}]


NODES: list[tuple[str, str, list[Any], type[pydantic.BaseModel]]] = [
    ("researcher", "Research the company.", [search_companies, get_company], Profile),
    ("planner", "Plan case-study searches.", [], Plan),
    ("case_studies", "Find case studies.", [search_case_studies], Candidates),
    ("selector", "Select one or two.", [], Selection),
    ("drafter", "Draft the email.", [], Draft),
]


CLIENTS: list[Any] = []
"""HTTP clients made in the current event loop, closed before it ends."""


def openai_model(url: str) -> Any:
    import httpx
    from openai import AsyncOpenAI
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    # A CPU-saturated event loop with 1,000 runs opens connections slowly; the SDK's 5 s
    # connect timeout would fail the plain side (which has no retries) for no fault of the server.
    client = AsyncOpenAI(base_url=url, api_key="bench", max_retries=0,
                         timeout=httpx.Timeout(300.0, connect=120.0))
    CLIENTS.append(client)
    return OpenAIChatModel("gpt-4.1-mini", provider=OpenAIProvider(openai_client=client))


async def close_clients() -> None:
    while CLIENTS:
        await CLIENTS.pop().close()


def tether_pipeline(url: str) -> Any:
    from tether import Agent, Sequential, tool

    model = openai_model(url)
    return Sequential("shaped", [
        Agent(name, model, instructions, tools=[tool(t) for t in tools], output_type=output)
        for name, instructions, tools, output in NODES])


def plain_agents(url: str) -> list[Any]:
    from pydantic_ai import Agent as PlainAgent

    model = openai_model(url)
    return [PlainAgent(model, instructions=instructions, tools=tools, output_type=output,
                       name=name) for name, instructions, tools, output in NODES]


async def bare_pipeline(model: Any, company: str) -> dict[str, Any]:
    """The same requests as tether's agent loop (`Model.request`, tools called directly), with
    no journal, no budgets, no gate: what tether's loop costs before durability."""
    from pydantic_ai.messages import ModelRequest, ToolCallPart, ToolReturnPart, UserPromptPart
    from pydantic_ai.models import ModelRequestParameters
    from pydantic_ai.tools import ToolDefinition

    from tether.agents.tools import as_tool

    state: dict[str, Any] = {"input": {"company": company}, "outputs": {}}
    for name, instructions, fns, output in NODES:
        tools = {t.name: t for t in map(as_tool, fns)}
        adapter = pydantic.TypeAdapter(output)
        params = ModelRequestParameters(
            function_tools=[ToolDefinition(name=t.name, parameters_json_schema=t.schema,
                                           description=t.description) for t in tools.values()],
            output_mode="tool", allow_text_output=False,
            output_tools=[ToolDefinition(name="final_result", kind="output",
                                         parameters_json_schema=adapter.json_schema())])
        messages: list[Any] = [ModelRequest(parts=[UserPromptPart(json.dumps(state))],
                                            instructions=instructions)]
        while True:
            response = await model.request(messages, None, params)
            messages.append(response)
            calls = [p for p in response.parts if isinstance(p, ToolCallPart)]
            final = [c for c in calls if c.tool_name == "final_result"]
            if final:
                state["outputs"][name] = adapter.dump_python(
                    adapter.validate_python(final[0].args_as_dict()), mode="json")
                break
            parts = [ToolReturnPart(c.tool_name, tools[c.tool_name].fn(**c.args_as_dict()),
                                    tool_call_id=c.tool_call_id) for c in calls]
            messages.append(ModelRequest(parts=parts, instructions=instructions))
    return state["outputs"]


async def plain_pipeline(agents: list[Any], company: str) -> dict[str, Any]:
    state: dict[str, Any] = {"input": {"company": company}, "outputs": {}}
    for agent in agents:
        result = await agent.run(json.dumps(state))
        state["outputs"][agent.name] = result.output.model_dump()
    return state["outputs"]


# --- the fake provider ----------------------------------------------------------------------


class Provider:
    """The fake provider in a process of its own."""

    def __init__(self, latency: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_provider", "--latency", str(latency)],
            cwd=ROOT, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": _pythonpath()})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"the fake provider did not start: {line!r}")
        self.url = line.split(" ", 1)[1]

    def stats(self) -> dict[str, int]:
        base = self.url.rsplit("/v1", 1)[0]
        with urllib.request.urlopen(f"{base}/stats", timeout=10) as response:
            return json.loads(response.read())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _pythonpath() -> str:
    return os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])


# --- 1. throughput ---------------------------------------------------------------------------


async def run_tether(url: str, runs: int, folder: Path) -> float:
    import tether

    app = tether.App(f"sqlite:///{folder / 'bench.db'}")
    app.register(tether_pipeline(url))
    finished = 0
    all_done = asyncio.Event()
    failures: list[str] = []

    async def on_end(run_id: str, status: str) -> None:
        nonlocal finished
        if status in ("succeeded", "failed", "refused", "cancelled"):
            finished += 1
            if status != "succeeded":
                failures.append(f"{run_id}: {status}")
            if finished == runs:
                all_done.set()

    app.executor.listeners.append(on_end)
    stop = asyncio.Event()
    started = time.perf_counter()
    for i in range(runs):
        await app.start_async("shaped", {"company": f"company {i}"})
    worker = asyncio.create_task(app.run_worker_async(concurrency=runs, stop=stop))
    await all_done.wait()
    elapsed = time.perf_counter() - started
    stop.set()
    await worker
    await app.store.close()
    await close_clients()
    if failures:
        raise RuntimeError(f"{len(failures)} tether runs did not succeed, e.g. {failures[0]}")
    return elapsed


async def run_plain(url: str, runs: int) -> float:
    agents = plain_agents(url)
    started = time.perf_counter()
    await asyncio.gather(*(plain_pipeline(agents, f"company {i}") for i in range(runs)))
    elapsed = time.perf_counter() - started
    await close_clients()
    return elapsed


async def run_bare(url: str, runs: int) -> float:
    model = openai_model(url)
    started = time.perf_counter()
    await asyncio.gather(*(bare_pipeline(model, f"company {i}") for i in range(runs)))
    elapsed = time.perf_counter() - started
    await close_clients()
    return elapsed


def throughput(runs: int, latency: float, reps: int) -> dict[str, Any]:
    provider = Provider(latency)
    try:
        plain: list[float] = []
        bare: list[float] = []
        durable: list[float] = []
        for rep in range(reps):  # alternate, so drift on a noisy machine hits every side
            before = provider.stats()["answered"]
            plain.append(asyncio.run(run_plain(provider.url, runs)))
            bare.append(asyncio.run(run_bare(provider.url, runs)))
            with tempfile.TemporaryDirectory(prefix="bench-agents-") as folder:
                durable.append(asyncio.run(run_tether(provider.url, runs, Path(folder))))
            answered = provider.stats()["answered"] - before
            assert answered == 3 * runs * CALLS_PER_RUN, f"rep {rep}: {answered} requests"
            print(f"  rep {rep + 1}: plain pydantic-ai Agent {plain[-1]:.2f}s, bare "
                  f"Model.request loop {bare[-1]:.2f}s, tether {durable[-1]:.2f}s", flush=True)
    finally:
        provider.close()

    def mid(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    p, b, t = mid(plain), mid(bare), mid(durable)
    return {"runs": runs, "latency_s": latency, "plain_s": p, "bare_s": b, "tether_s": t,
            "ratio": t / p, "ratio_vs_bare": t / b, "floor_s": CALLS_PER_RUN * latency,
            "reps": {"plain": plain, "bare": bare, "tether": durable}}


# --- 2. kill -----------------------------------------------------------------------------------


def kill_scenario(side: str, runs: int, latency: float) -> dict[str, Any]:
    provider = Provider(latency)
    folder = Path(tempfile.mkdtemp(prefix=f"bench-kill-{side}-"))
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    args = [sys.executable, __file__, "--role", side, "--url", provider.url, "--dir",
            str(folder), "--kill-runs", str(runs)]
    try:
        first = subprocess.Popen(args, env=env)
        needed = runs * CALLS_PER_RUN
        deadline = time.monotonic() + 120
        while provider.stats()["answered"] < needed // 2:
            if first.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{side}: the first process ended before the kill")
            time.sleep(0.01)
        # Kill mid-latency: answers already sent have been processed, the next requests are
        # waiting at the server — so "answered" means "completed" on both sides.
        time.sleep(latency / 2)
        at_kill = provider.stats()
        first.send_signal(signal.SIGKILL)
        first.wait()
        time.sleep(0.3)  # requests already on the wire still reach the server
        after_kill = provider.stats()
        second = subprocess.run([*args, "--resume"], env=env, timeout=300)
        if second.returncode != 0:
            raise RuntimeError(f"{side}: the resumed process failed ({second.returncode})")
        final = provider.stats()
    finally:
        provider.close()
    extra = final["requests"] - needed
    in_flight = after_kill["requests"] - at_kill["answered"]
    return {"side": side, "runs": runs, "needed": needed, "sent": final["requests"],
            "extra": extra, "in_flight_at_kill": in_flight,
            "completed_repaid": max(0, extra - in_flight)}


async def tether_role(url: str, folder: Path, runs: int, resume: bool) -> None:
    import tether

    app = tether.App(f"sqlite:///{folder / 'kill.db'}", lease_seconds=1.0)
    app.register(tether_pipeline(url))
    if not resume:
        for i in range(runs):
            await app.start_async("shaped", {"company": f"company {i}"}, run_id=f"run-{i}")
    stop = asyncio.Event()
    worker = asyncio.create_task(app.run_worker_async(concurrency=runs, stop=stop))
    while True:
        done = await app.store.list_runs(status="succeeded", limit=runs + 1)
        if len(done) == runs:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await worker
    await close_clients()


async def langgraph_role(url: str, folder: Path, runs: int, resume: bool) -> None:
    from typing import TypedDict

    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph

    agents = plain_agents(url)

    class State(TypedDict):
        input: dict[str, Any]
        outputs: dict[str, Any]

    def node(agent: Any) -> Any:
        async def run(state: State) -> dict[str, Any]:
            result = await agent.run(json.dumps(state))
            return {"outputs": {**state["outputs"], agent.name: result.output.model_dump()}}

        return run

    graph = StateGraph(State)
    previous = START
    for agent in agents:
        graph.add_node(agent.name, node(agent))
        graph.add_edge(previous, agent.name)
        previous = agent.name
    graph.add_edge(previous, END)
    async with AsyncSqliteSaver.from_conn_string(str(folder / "langgraph.sqlite")) as saver:
        compiled = graph.compile(checkpointer=saver)

        async def one(i: int) -> None:
            config: Any = {"configurable": {"thread_id": f"run-{i}"}}
            start = None if resume else {"input": {"company": f"company {i}"}, "outputs": {}}
            await compiled.ainvoke(start, config, durability="sync")

        await asyncio.gather(*(one(i) for i in range(runs)))
    await close_clients()


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--kill-runs", type=int, default=20)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-kill", action="store_true")
    parser.add_argument("--role", choices=["tether", "langgraph"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "tether":
        asyncio.run(tether_role(args.url, Path(args.dir), args.kill_runs, args.resume))
        return
    if args.role == "langgraph":
        asyncio.run(langgraph_role(args.url, Path(args.dir), args.kill_runs, args.resume))
        return
    results: dict[str, Any] = {}
    if not args.skip_throughput:
        print(f"throughput: {args.runs} concurrent Titanium-shaped runs, {CALLS_PER_RUN} model "
              f"calls each, {args.latency * 1000:.0f} ms per call, {args.reps} reps", flush=True)
        t = throughput(args.runs, args.latency, args.reps)
        results["throughput"] = t
        verdict = "met" if t["ratio"] <= 1.05 else "NOT met"
        print(f"  median: plain pydantic-ai {t['plain_s']:.2f}s, tether {t['tether_s']:.2f}s "
              f"-> {t['ratio']:.3f}x (target <= 1.05x: {verdict}; latency floor "
              f"{t['floor_s']:.1f}s)", flush=True)
        print(f"  durability alone: tether vs the bare Model.request loop "
              f"{t['ratio_vs_bare']:.3f}x", flush=True)
    if not args.skip_kill:
        print(f"kill: {args.kill_runs} concurrent runs, SIGKILL at half the model calls",
              flush=True)
        for side in ("tether", "langgraph"):
            k = kill_scenario(side, args.kill_runs, args.latency)
            results[f"kill_{side}"] = k
            print(f"  {side:9}: {k['sent']} requests for {k['needed']} needed -> {k['extra']} "
                  f"re-paid; {k['in_flight_at_kill']} were in flight at the kill, "
                  f"{k['completed_repaid']} had completed before it", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
