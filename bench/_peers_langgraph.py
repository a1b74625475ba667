"""LangGraph with the SQLite checkpointer: W graph runs x S no-op nodes, one after another.

Run by bench_engine.py in a process of its own; prints one JSON object:
``{"steps_per_s": [...], "steps_per_cpu_s": [...], "journal_mode": ..., "synchronous": ...}``
(``steps_per_cpu_s``: steps per second of this process's CPU time, all its threads).

The graph is a chain of S nodes, each adding 1 to the state; every run is a new thread and is
invoked with ``durability="sync"`` (the checkpoint of each step is written before the next step
starts, LangGraph's most durable mode). Settings (``--sqlite``):

* ``default`` — ``SqliteSaver`` on a plain ``sqlite3.connect`` connection: its ``setup()`` sets
  ``journal_mode=WAL``; ``synchronous`` stays SQLite's default, FULL.
* ``wal-normal`` / ``wal-full`` — the same with ``synchronous`` set on the connection.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any, TypedDict

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

SYNCHRONOUS = {"default": None, "wal-normal": "NORMAL", "wal-full": "FULL"}


class Count(TypedDict):
    n: int


def noop(state: Count) -> dict[str, int]:
    return {"n": state["n"] + 1}


def build(steps: int, saver: SqliteSaver) -> Any:
    graph = StateGraph(Count)
    previous = START
    for i in range(steps):
        graph.add_node(f"step{i}", noop)
        graph.add_edge(previous, f"step{i}")
        previous = f"step{i}"
    graph.add_edge(previous, END)
    return graph.compile(checkpointer=saver)


def measure(workflows: int, steps: int, reps: int, setting: str) -> dict[str, Any]:
    rates: list[float] = []
    cpu_rates: list[float] = []
    mode, sync = "?", -1
    for rep in range(reps):
        folder = Path(tempfile.mkdtemp(prefix="bench-langgraph-"))
        conn = sqlite3.connect(folder / "langgraph.sqlite", check_same_thread=False)
        saver = SqliteSaver(conn)
        saver.setup()
        if SYNCHRONOUS[setting]:
            conn.execute(f"PRAGMA synchronous={SYNCHRONOUS[setting]}")
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]
        app = build(steps, saver)
        config = {"configurable": {"thread_id": f"warm-{rep}"}}
        app.invoke({"n": 0}, config, durability="sync")  # warm-up
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(workflows):
            config = {"configurable": {"thread_id": f"{rep}-{i}"}}
            out = app.invoke({"n": 0}, config, durability="sync")
            assert out["n"] == steps, out  # every node really ran
        elapsed = time.perf_counter() - started
        rates.append(workflows * steps / elapsed)
        cpu_rates.append(workflows * steps / (time.process_time() - cpu))
        conn.close()
    return {
        "steps_per_s": rates,
        "steps_per_cpu_s": cpu_rates,
        "journal_mode": mode,
        "synchronous": sync,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sqlite", choices=sorted(SYNCHRONOUS), default="default")
    args = parser.parse_args()
    print(json.dumps(measure(args.workflows, args.steps, args.reps, args.sqlite)), flush=True)


if __name__ == "__main__":
    main()
