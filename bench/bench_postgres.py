"""Benchmark of tether on PostgreSQL, against raw INSERTs, DBOS and LangGraph on the same server.

    python bench/bench_postgres.py                 # everything, a few minutes
    python bench/bench_postgres.py --quick         # fewer repetitions and runs, a smoke run
    python bench/bench_postgres.py --url postgresql://postgres@127.0.0.1:5432/test
    python bench/bench_postgres.py --only sequential --no-peers   # tether vs raw INSERTs only

Measures (medians of --reps repetitions; the spread is printed too):

1. sequential durable steps/s: W runs x S no-op steps one after another (`App.run_async`), next
   to the server's raw single-row INSERT+COMMIT/s (as BEGIN/INSERT/COMMIT transactions and as
   autocommit single statements; see `raw_inserts`), DBOS (Postgres system database) and
   LangGraph `PostgresSaver` with ``durability="sync"`` — the same W x S workload;
2. 200 concurrent runs x 10 steps: the runs are queued first, then a worker is started in this
   process; the clock runs from the worker's start until its run listener has seen all 200 end;
3. signal -> run resumed latency (p50/p99) with an idle worker, woken by NOTIFY;
4. scale-out: the same batch of runs with 1, 2 and 4 worker processes; lost/duplicated steps
   are counted from the journal;
5. 1,000 approvals: 1,000 runs waiting for a signal in worker processes, 1,000 signals sent,
   time until all finished;
6. an unreachable server: how long a store call takes to give up with `StoreUnavailable`.

Everything runs in a dedicated database (``tether_bench``; DBOS gets ``tether_bench_dbos``) on
the server of --url, in a fresh schema per measurement. Peers run in processes of their own
(``--role``). The machine is shared by whatever else runs; medians of several repetitions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import psycopg

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "src"))

import tether  # noqa: E402

BENCH_DB = "tether_bench"


# --- databases and schemas ----------------------------------------------------------------------


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}", query=""))


def with_schema(url: str, schema: str) -> str:
    query = urlencode({"options": f"-csearch_path={schema}"}, quote_via=quote)
    return urlunsplit(urlsplit(url)._replace(query=query))


def ensure_database(url: str, database: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
    return with_database(url, database)


@contextmanager
def fresh_schema(db_url: str) -> Iterator[str]:
    schema = f"b_{secrets.token_hex(5)}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield with_schema(db_url, schema)
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def count(url: str, sql: str) -> int:
    from tether.store.postgres import parse_postgres_url

    with psycopg.connect(parse_postgres_url(url)[0], autocommit=True) as conn:
        row = conn.execute(sql.encode()).fetchone()
    return int(row[0]) if row else 0


# --- the app every measurement runs -----------------------------------------------------------------


def make_app(url: str) -> tether.App:
    app = tether.App(url)
    resumed: dict[str, float] = {}
    app.extensions["bench.resumed"] = resumed

    @app.step
    async def noop(i: int) -> int:
        return i

    @app.workflow(name="sequence")
    async def sequence(ctx: tether.Context, steps: int = 10) -> int:
        for i in range(steps):
            await noop(i)
        return steps

    @app.workflow(name="approval")
    async def approval(ctx: tether.Context) -> Any:
        decision = await ctx.wait_for_signal("approval")
        resumed[ctx.run_id] = time.perf_counter()
        return decision

    return app


# --- 1. sequential --------------------------------------------------------------------------------------


def raw_inserts(db_url: str, n: int) -> tuple[float, float]:
    """Single-row INSERT+COMMIT/s two ways, on one fresh table:

    * as one statement on an autocommit connection: one round trip, the server commits it
      implicitly. The stricter floor, and the way tether sends a lone journal write;
    * as a transaction the way psycopg runs one by default: ``conn.execute(INSERT)`` then
      ``conn.commit()``, i.e. BEGIN, INSERT, COMMIT: three round trips, one commit.
    """
    with fresh_schema(db_url) as url, psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE raw (id bigserial PRIMARY KEY, v text)")
        for _ in range(20):
            conn.execute("INSERT INTO raw (v) VALUES (%s)", ("warm",))
        started = time.perf_counter()
        for i in range(n):
            conn.execute("INSERT INTO raw (v) VALUES (%s)", (str(i),))
        statement = n / (time.perf_counter() - started)
        conn.autocommit = False
        for _ in range(20):
            conn.execute("INSERT INTO raw (v) VALUES (%s)", ("warm",))
            conn.commit()
        started = time.perf_counter()
        for i in range(n):
            conn.execute("INSERT INTO raw (v) VALUES (%s)", (str(i),))
            conn.commit()
        transaction = n / (time.perf_counter() - started)
        return statement, transaction


def tether_sequential(db_url: str, workflows: int, steps: int) -> float:
    with fresh_schema(db_url) as url:
        app = make_app(url)

        async def main() -> float:
            await app.run_async("sequence", {"steps": steps})  # warm-up, as for the peers
            started = time.perf_counter()
            for _ in range(workflows):
                info = await app.run_async("sequence", {"steps": steps})
                if info.status != "succeeded" or len(info.steps) != steps:
                    raise RuntimeError(f"run {info.id} ended {info.status}: {info.error}")
            return workflows * steps / (time.perf_counter() - started)

        try:
            return asyncio.run(main())
        finally:
            app.close()


def dbos_sequential(server_url: str, workflows: int, steps: int) -> float:
    import logging

    from dbos import DBOS

    @DBOS.step()
    def noop(i: int) -> int:
        return i

    @DBOS.workflow()
    def sequence(steps: int) -> int:
        for i in range(steps):
            noop(i)
        return steps

    database = "tether_bench_dbos"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(config={
        "name": "bench",
        "system_database_url": with_database(server_url, database),
        "log_level": "WARNING",
    })
    DBOS.launch()
    try:
        sequence(steps)  # warm-up
        started = time.perf_counter()
        for _ in range(workflows):
            sequence(steps)
        return workflows * steps / (time.perf_counter() - started)
    finally:
        DBOS.destroy()


def langgraph_sequential(db_url: str, workflows: int, steps: int) -> float:
    from typing import TypedDict

    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.graph import END, START, StateGraph

    class Count(TypedDict):
        n: int

    def bump(state: Count) -> dict[str, int]:
        return {"n": state["n"] + 1}

    with fresh_schema(db_url) as url, PostgresSaver.from_conn_string(url) as saver:
        saver.setup()
        graph = StateGraph(Count)
        previous = START
        for i in range(steps):
            graph.add_node(f"step{i}", bump)
            graph.add_edge(previous, f"step{i}")
            previous = f"step{i}"
        graph.add_edge(previous, END)
        app = graph.compile(checkpointer=saver)
        app.invoke({"n": 0}, {"configurable": {"thread_id": "warm"}}, durability="sync")
        started = time.perf_counter()
        for i in range(workflows):
            out = app.invoke({"n": 0}, {"configurable": {"thread_id": str(i)}}, durability="sync")
            assert out["n"] == steps
        return workflows * steps / (time.perf_counter() - started)


# --- 2. concurrent -----------------------------------------------------------------------------------------


def tether_concurrent(db_url: str, runs: int, steps: int) -> float:
    with fresh_schema(db_url) as url:
        app = make_app(url)

        async def main() -> float:
            finished = asyncio.Event()
            done = 0

            async def on_end(run_id: str, status: str) -> None:
                nonlocal done
                done += 1
                if done == runs:
                    finished.set()

            app.executor.listeners.append(on_end)
            await asyncio.gather(*(app.start_async("sequence", {"steps": steps}) for _ in range(runs)))
            stop = asyncio.Event()
            started = time.perf_counter()
            worker = asyncio.create_task(app.run_worker_async(concurrency=runs, stop=stop))
            await asyncio.wait_for(finished.wait(), 120)
            elapsed = time.perf_counter() - started
            stop.set()
            await worker
            return runs * steps / elapsed

        try:
            rate = asyncio.run(main())
        finally:
            app.close()
        journal = count(url, "SELECT count(*) FROM steps")
        if journal != runs * steps:
            raise RuntimeError(f"concurrent: journal has {journal} entries, expected {runs * steps}")
        return rate


# --- 3. signal -> resumed latency --------------------------------------------------------------------------


def signal_latency(db_url: str, samples: int) -> tuple[float, float]:
    """An idle worker (its own App and store: its own pool and LISTEN connection) and a client
    App signalling from another pool: the wake-up travels through NOTIFY."""
    with fresh_schema(db_url) as url:
        worker_app = make_app(url)
        client = tether.App(url)
        resumed: dict[str, float] = worker_app.extensions["bench.resumed"]

        async def main() -> list[float]:
            stop = asyncio.Event()
            worker = asyncio.create_task(worker_app.run_worker_async(concurrency=50, stop=stop))
            ids = [(await client.start_async("approval")).id for _ in range(samples)]
            while await asyncio.to_thread(count, url, "SELECT count(*) FROM runs WHERE status = 'waiting'") < samples:  # noqa: ASYNC110 - another process's state
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # let the worker go idle on its LISTEN connection
            latencies: list[float] = []
            for run_id in ids:
                sent = time.perf_counter()
                await client.store.send_signal(run_id, "approval", {"ok": True})
                while run_id not in resumed:  # noqa: ASYNC110 - the workflow stamps the time itself
                    await asyncio.sleep(0.0005)
                latencies.append(resumed[run_id] - sent)
                await asyncio.sleep(0.06)  # the worker is idle again before the next signal
            stop.set()
            await worker
            return latencies

        try:
            latencies = sorted(asyncio.run(main()))
        finally:
            worker_app.close()
            client.close()
        return latencies[len(latencies) // 2], latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]


# --- 4 and 5: worker processes -------------------------------------------------------------------------------


def start_workers(url: str, n: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE), "--role", "worker", "--url", url, "--concurrency", str(concurrency)],
            stdout=subprocess.PIPE,
        )
        for _ in range(n)
    ]
    for proc in procs:
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready": imported, connected, migrated
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(30)


def worker_role(url: str, concurrency: int) -> None:
    app = make_app(url)
    asyncio.run(app.store.open())
    print("ready", flush=True)
    app.run_worker(concurrency=concurrency, grace_period=1.0)


def wait_for(url: str, sql: str, target: int, seconds: float) -> float:
    started = time.perf_counter()
    deadline = started + seconds
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        while True:
            row = conn.execute(sql.encode()).fetchone()
            if row and row[0] >= target:
                return time.perf_counter()
            if time.perf_counter() > deadline:
                raise RuntimeError(f"timed out: {sql} < {target}")
            time.sleep(0.002)


def _conninfo(url: str) -> str:
    from tether.store.postgres import parse_postgres_url

    return parse_postgres_url(url)[0]


def scale_out(db_url: str, workers: int, runs: int, steps: int) -> tuple[float, int, int]:
    with fresh_schema(db_url) as url:
        client = tether.App(url)
        client.list_runs(limit=1)  # connect and migrate before the clock starts
        procs = start_workers(url, workers, 200)
        try:
            started = time.perf_counter()

            async def create() -> None:
                await asyncio.gather(*(client.start_async("sequence", {"steps": steps}) for _ in range(runs)))

            client.portal.run(create())
            ended = wait_for(url, "SELECT count(*) FROM runs WHERE status = 'succeeded'", runs, 300)
        finally:
            stop_workers(procs)
            client.close()
        entries = count(url, "SELECT count(*) FROM steps")
        complete = count(url, "SELECT count(*) FROM (SELECT run_id FROM steps GROUP BY run_id "
                              f"HAVING count(*) = {steps} AND max(seq) = {steps}) AS full_runs")
        return runs * steps / (ended - started), runs * steps - entries, runs - complete


def approvals(db_url: str, runs: int, workers: int) -> float:
    with fresh_schema(db_url) as url:
        client = tether.App(url)
        client.list_runs(limit=1)
        procs = start_workers(url, workers, runs)
        try:
            async def create() -> list[str]:
                handles = await asyncio.gather(*(client.start_async("approval") for _ in range(runs)))
                return [h.id for h in handles]

            ids = client.portal.run(create())
            wait_for(url, "SELECT count(*) FROM runs WHERE status = 'waiting'", runs, 120)
            started = time.perf_counter()

            async def approve() -> None:
                await asyncio.gather(*(client.store.send_signal(i, "approval", {"ok": True}) for i in ids))

            client.portal.run(approve())
            ended = wait_for(url, "SELECT count(*) FROM runs WHERE status = 'succeeded'", runs, 120)
        finally:
            stop_workers(procs)
            client.close()
        return ended - started


# --- running it all -------------------------------------------------------------------------------------------


def peer(role: str, args: argparse.Namespace) -> float:
    out = subprocess.run(
        [sys.executable, str(HERE), "--role", role, "--url", args.url, "--workflows", str(args.workflows),
         "--steps", str(args.steps)],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{role} failed:\n{out.stderr[-3000:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["steps_per_s"])


# --- 6. giving up on an unreachable server -----------------------------------------------------------


def unreachable(retry_seconds: float) -> float:
    """Seconds from a store call against a port nobody listens on until `StoreUnavailable`."""
    from tether.errors import StoreUnavailable
    from tether.store.postgres import PostgresStore

    async def main() -> float:
        store = PostgresStore(
            f"postgresql://postgres@127.0.0.1:9/x?retry_seconds={retry_seconds}&connect_timeout=1"
        )
        started = time.perf_counter()
        try:
            await store.get_run("x")
        except StoreUnavailable:
            return time.perf_counter() - started
        finally:
            await store.close()
        raise RuntimeError("a store on a closed port answered")

    return asyncio.run(main())


def median_of(values: list[float]) -> str:
    spread = f" (min {min(values):,.0f} max {max(values):,.0f})" if len(values) > 1 else ""
    return f"{statistics.median(values):,.0f}{spread}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("TETHER_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workflows", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-peers", action="store_true", help="sequential: skip DBOS and LangGraph")
    parser.add_argument("--role", choices=["worker", "dbos", "langgraph"])
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--only", default="", help="comma-separated: sequential,concurrent,latency,scale,approvals,unreachable")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress shows as it comes

    server = with_database(args.url, urlsplit(args.url).path.lstrip("/") or "postgres")
    if args.role == "worker":
        worker_role(args.url, args.concurrency)
        return
    db_url = ensure_database(server, BENCH_DB)
    if args.role == "dbos":
        print(json.dumps({"steps_per_s": dbos_sequential(server, args.workflows, args.steps)}))
        return
    if args.role == "langgraph":
        print(json.dumps({"steps_per_s": langgraph_sequential(db_url, args.workflows, args.steps)}))
        return

    if args.quick:
        args.reps, args.workflows = 1, 20
    only = set(filter(None, args.only.split(",")))
    want = (lambda name: not only or name in only)  # noqa: E731
    w, s = args.workflows, args.steps
    print(f"PostgreSQL benchmark on {server} (database {BENCH_DB}), {args.reps} rep(s), W={w} S={s}")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")

    if want("sequential"):
        # Interleaved, and ratios taken per repetition: the disk's fsync time drifts with
        # whatever else the machine does, and a ratio of medians taken minutes apart misleads.
        raw: list[tuple[float, float]] = []
        ours: list[float] = []
        dbos: list[float] = []
        graph: list[float] = []
        for _ in range(args.reps):
            raw.append(raw_inserts(db_url, 500 if args.quick else 1000))
            ours.append(tether_sequential(db_url, w, s))
            if not args.no_peers:
                dbos.append(peer("dbos", args))
                graph.append(peer("langgraph", args))
            raw.append(raw_inserts(db_url, 500 if args.quick else 1000))
        pairs = [raw[2 * i : 2 * i + 2] for i in range(args.reps)]
        raw_statement = [statistics.mean(p[0] for p in pair) for pair in pairs]
        raw_transaction = [statistics.mean(p[1] for p in pair) for pair in pairs]
        m = statistics.median
        vs_statement = m(o / r for o, r in zip(ours, raw_statement, strict=True))
        vs_transaction = m(o / r for o, r in zip(ours, raw_transaction, strict=True))
        vs_dbos = m(o / d for o, d in zip(ours, dbos, strict=True)) if dbos else 0.0
        vs_graph = m(o / g for o, g in zip(ours, graph, strict=True)) if graph else 0.0
        print("1. sequential durable steps/s (one run after another; ratios: median of per-rep ratios)")
        print("   raw single-row INSERT+COMMIT/s, measured before and after each rep:")
        print(f"     BEGIN; INSERT; COMMIT      {median_of(raw_transaction)}   (psycopg's default transaction)")
        print(f"     INSERT in autocommit       {median_of(raw_statement)}   (one round trip per commit)")
        print(f"   tether                       {median_of(ours)}   = {vs_statement:.0%} of the "
              f"autocommit loop (target >= 70%, issue 15), {vs_transaction:.0%} of the "
              "transaction loop")
        if dbos:
            print(f"   DBOS (Postgres system db)    {median_of(dbos)}   tether/DBOS = {vs_dbos:.1f}x (target >= 4x)")
            print(f"   LangGraph PostgresSaver sync {median_of(graph)}   tether/LangGraph = {vs_graph:.1f}x")
        print()

    if want("concurrent"):
        rates = [tether_concurrent(db_url, 200, 10) for _ in range(args.reps)]
        print(f"2. 200 concurrent runs x 10 steps: {median_of(rates)} steps/s (target >= 10,000)\n")

    if want("latency"):
        samples = 50 if args.quick else 200
        results = [signal_latency(db_url, samples) for _ in range(args.reps)]
        p50 = statistics.median(r[0] for r in results) * 1000
        p99 = statistics.median(r[1] for r in results) * 1000
        print(f"3. signal -> run resumed, idle worker, {samples} signals: p50 {p50:.1f} ms, "
              f"p99 {p99:.1f} ms (targets 20 / 100 ms)\n")

    if want("scale"):
        runs = 200 if args.quick else 1000
        print(f"4. scale-out: {runs} runs x 10 steps, worker processes started first")
        for n in (1, 2, 4):
            rate, lost, incomplete = scale_out(db_url, n, runs, 10)
            print(f"   {n} worker(s): {rate:,.0f} steps/s; journal entries missing {lost}, runs incomplete {incomplete}")
        print()

    if want("approvals"):
        seconds = [approvals(db_url, 1000, 2) for _ in range(args.reps)]
        print(f"5. 1,000 waiting runs, 1,000 signals -> all finished: {statistics.median(seconds):.2f} s "
              f"(min {min(seconds):.2f}; target <= 1 s), 2 worker processes")

    if want("unreachable"):
        seconds = [unreachable(0.5) for _ in range(args.reps)]
        print(f"6. unreachable server, retry_seconds=0.5: StoreUnavailable after "
              f"{statistics.median(seconds):.2f} s (min {min(seconds):.2f}, max {max(seconds):.2f})")


if __name__ == "__main__":
    main()
