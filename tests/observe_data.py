"""Generated journals written straight through a store: many runs of model calls with chosen
latencies, costs, fingerprints and outcomes (for stats and change detection)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from tether.observe import names as n
from tether.store.base import NewRun, StepRecord, Store


@dataclass(frozen=True, slots=True)
class Call:
    """One generated model call, journaled as the only step of its own run."""

    node: str
    started_at: float
    latency: float
    prompt_hash: str = "p1"
    model: str = "gpt-4o-mini"
    app_version: str = "1.0"
    cost_usd: float = 0.001
    failed: bool = False
    attempts: int = 1
    labels: dict[str, str] = field(default_factory=dict[str, str])
    run_status: str | None = None


async def write_calls(store: Store, calls: list[Call], prefix: str = "gen") -> None:
    async def one(i: int, call: Call) -> None:
        new = NewRun(id=f"{prefix}-{i:05d}", workflow="generated", version="1", input={},
                     labels=call.labels)
        run, token, _ = await store.create_run(new, owner="generator", lease_seconds=60)
        assert token is not None
        meta: dict[str, Any] = {
            n.OPERATION_NAME: n.OP_CHAT, n.NODE: call.node, n.AGENT_NAME: call.node,
            n.REQUEST_MODEL: call.model, n.RESPONSE_MODEL: call.model,
            n.PROMPT_HASH: call.prompt_hash, n.APP_VERSION: call.app_version,
        }
        await store.write_step(run.id, token, StepRecord(
            run_id=run.id, seq=1, name="chat", kind="step",
            status="failed" if call.failed else "completed",
            error={"type": "ModelHTTPError", "message": "503"} if call.failed else None,
            attempts=call.attempts, started_at=call.started_at,
            finished_at=call.started_at + call.latency,
            usage={"llm_calls": call.attempts, "input_tokens": 100, "output_tokens": 50,
                   "cost_usd": call.cost_usd},
            meta=meta,
        ))
        status = call.run_status or ("failed" if call.failed else "succeeded")
        await store.finish_run(run.id, token, status=status)

    for start in range(0, len(calls), 200):
        await asyncio.gather(*(one(i, c) for i, c in enumerate(calls) if start <= i < start + 200))
