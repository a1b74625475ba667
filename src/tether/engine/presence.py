"""Which workers are alive and what they serve: the worker registry, seen from the engine.

A deploy that replaces every version-1 worker with version-2 ones leaves version-1 runs that
no worker will ever claim. Nothing fails, so nothing says so — unless workers are known:

1. At start a worker writes its `WorkerRecord` — owner, host, pid, lease and the
   ``(workflow, version)`` pairs it claims (`announce`).
2. A task of its own refreshes the row's ``last_seen`` once per lease period, and writes the
   row again if it was forgotten (`keep_announced`). It is one cheap statement, separate from
   the lease heartbeat: a registry hiccup never costs a lease.
3. A graceful stop deletes the row (`withdraw`); a dead worker's row stops counting once it
   has been silent for `WORKER_LIVE_LEASES` of its lease periods.
4. `Coverage` — the live workers at one moment — tells whether a run's workflow version is
   served and, when it is not, says what to do: fork the run onto a served version or start a
   worker with its version. `tether runs` / `show`, health verdicts, `tether start` and a
   starting worker use it.

The registry is advisory: claims never consult it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from tether.engine.registry import version_key
from tether.store.base import WORKER_LIVE_LEASES, Store, WorkerRecord

log = logging.getLogger("tether.worker")


class PresenceHost(Protocol):
    """What a worker's presence reads of the `Runtime` it serves (named by this protocol, not
    imported: the runtime builds the worker, so the import would go round in a circle)."""

    @property
    def store(self) -> Store: ...

    @property
    def lease_seconds(self) -> float: ...

    def workflow_keys(self) -> list[tuple[str, str]]: ...


def worker_record(app: PresenceHost, owner: str, name: str) -> WorkerRecord:
    """The registry row a worker of `app` announces."""
    return WorkerRecord(
        owner=owner,
        name=name,
        host=socket.gethostname(),
        pid=os.getpid(),
        started_at=time.time(),
        last_seen=time.time(),
        lease_seconds=app.lease_seconds,
        workflows=tuple(sorted(app.workflow_keys())),
    )


class _Held(Protocol):
    @property
    def lease_owner(self) -> str | None: ...


H = TypeVar("H", bound=_Held)


def held_by(workers: Sequence[WorkerRecord], running: Sequence[H]) -> tuple[dict[str, list[H]], list[H]]:
    """The running runs each live worker's lease holds, and those whose lease names no live
    worker (their worker died; another takes each over when its lease expires)."""
    held: dict[str, list[H]] = {w.owner: [] for w in workers}
    orphans: list[H] = []
    for run in running:
        held.get(run.lease_owner or "", orphans).append(run)
    return held, orphans


def worker_fields(worker: WorkerRecord, now: float) -> dict[str, Any]:
    """A live worker as the API and ``tether workers --json`` show it (without its runs)."""
    return {
        "owner": worker.owner,
        "name": worker.name,
        "host": worker.host,
        "pid": worker.pid,
        "started_at": datetime.fromtimestamp(worker.started_at, UTC).isoformat(),
        "last_seen": datetime.fromtimestamp(worker.last_seen, UTC).isoformat(),
        "seconds_since_heartbeat": max(0.0, now - worker.last_seen),
        "late": now - worker.last_seen > worker.lease_seconds,
        "lease_seconds": worker.lease_seconds,
        "workflows": [{"workflow": w, "version": v} for w, v in worker.workflows],
    }


async def announce(store: Store, record: WorkerRecord) -> None:
    """Write the worker's row; a failure is logged, never fatal (the registry is advisory)."""
    try:
        await store.register_worker(record)
    except Exception as exc:
        log.warning("worker %s: cannot write the worker registry (%s)", record.name, exc)


async def keep_announced(store: Store, record: WorkerRecord) -> None:
    """Refresh the worker's ``last_seen`` once per lease period, until cancelled."""
    while True:
        await asyncio.sleep(record.lease_seconds)
        try:
            if not await store.touch_worker(record.owner):
                await store.register_worker(record)
        except Exception as exc:
            log.debug("worker %s: worker registry refresh failed (%s)", record.name, exc)


async def withdraw(store: Store, record: WorkerRecord) -> None:
    """Delete the worker's row on a graceful stop."""
    with contextlib.suppress(Exception):
        await store.remove_worker(record.owner)


def _label(workflow: str, version: str | None) -> str:
    return workflow if version is None else f"{workflow} v{version}"


@dataclass(frozen=True, slots=True)
class Coverage:
    """The live workers at one moment, and what they serve."""

    workers: Sequence[WorkerRecord]

    def versions(self, workflow: str) -> list[str]:
        """The versions of `workflow` some live worker serves, oldest first."""
        found = {v for w in self.workers for n, v in w.workflows if n == workflow}
        return sorted(found, key=version_key)

    def serves(self, workflow: str, version: str | None) -> bool:
        """Whether a live worker claims runs of this workflow (at `version`; ``None``: any)."""
        versions = self.versions(workflow)
        return bool(versions) if version is None else version in versions

    def gap(self, workflow: str, version: str | None, run_id: str | None = None) -> str | None:
        """``None`` when a live worker serves the pair; else what is wrong and what to do."""
        if self.serves(workflow, version):
            return None
        what = _label(workflow, version)
        if not self.workers:
            return (
                f"no live worker serves {what}: no worker is running (none seen within "
                f"{WORKER_LIVE_LEASES:g} lease periods) — start one with "
                "`tether worker --app module:app`"
            )
        versions = self.versions(workflow)
        if not versions:
            served = sorted({n for w in self.workers for n, _ in w.workflows})
            return (
                f"no live worker serves workflow {workflow!r} (live workers serve: "
                f"{', '.join(served) or 'nothing'}) — start a worker whose app defines it"
            )
        target = run_id or "RUN"
        return (
            f"no live worker serves {what}; live workers serve "
            f"{', '.join('v' + v for v in versions)} — fork it with "
            f"`tether fork {target} --version {versions[-1]}` or start a v{version} worker"
        )


async def coverage(store: Store) -> Coverage:
    """The live workers, read once."""
    return Coverage(await store.list_workers())


async def report_unserved(app: PresenceHost, worker_name: str) -> None:
    """Log, once at worker start, the queued and waiting runs no live worker serves."""
    try:
        live = await coverage(app.store)
        pending = await app.store.pending_versions()
    except Exception as exc:
        log.debug("worker %s: cannot check for unserved runs (%s)", worker_name, exc)
        return
    unserved: dict[tuple[str, str | None], dict[str, int]] = {}
    for workflow, version, status, count in pending:
        if not live.serves(workflow, version):
            unserved.setdefault((workflow, version), {})[status] = count
    for (workflow, version), counts in sorted(unserved.items(), key=lambda i: (i[0][0], i[0][1] or "")):
        examples: list[str] = []
        for status in sorted(counts):
            try:
                runs = await app.store.list_runs(status=status, workflow=workflow, limit=200)
            except Exception:
                break
            examples += [r.id for r in runs if r.version == version][: 5 - len(examples)]
        total = sum(counts.values())
        states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        gap = live.gap(workflow, version, examples[0] if total == 1 and examples else None)
        log.warning(
            "worker %s: %d run(s) of %s (%s) will not be served: %s; e.g. %s",
            worker_name,
            total,
            _label(workflow, version),
            states,
            gap,
            ", ".join(examples) or "none listed",
        )
