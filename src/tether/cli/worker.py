"""`tether worker`: execute an App's runs in this process until SIGTERM or SIGINT.

The first SIGTERM/SIGINT stops claiming and gives in-flight runs `--grace` seconds to finish;
runs still going after that are handed back (released, not failed) so another worker resumes
them at once. A second signal exits immediately; the runs it held are taken over by another
worker when their leases expire.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal as signal_module
import sys
import threading
import time
from typing import TYPE_CHECKING

import typer

from tether.cli.common import (
    APP_HELP,
    STORE_HELP,
    cli,
    handle_errors,
    load_app,
    open_sqlite_now,
    redact_url,
)
from tether.cli.render import error_line
from tether.errors import UserError

if TYPE_CHECKING:
    from tether.app import App

log = logging.getLogger("tether.worker")

LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Timestamped lines on stderr, the format process supervisors expect."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise UserError(f"--log-level {level!r} is not a level; use debug, info, warning or error")
    logging.basicConfig(
        stream=sys.stderr, level=numeric, format=LOG_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S"
    )


@cli.command()
@handle_errors
def worker(
    app: str = typer.Option(..., "--app", help=APP_HELP),
    concurrency: int = typer.Option(100, "--concurrency", "-c", min=1, help="Runs at once"),
    worker_id: str | None = typer.Option(
        None, "--id", help="Worker name in logs and leases (default: host-pid)"
    ),
    grace: float = typer.Option(
        10.0,
        "--grace",
        min=0.0,
        help="Seconds in-flight runs get to finish after SIGTERM/SIGINT before they are "
        "handed back to other workers",
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error"),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """Run a worker: claim runnable runs of the app's workflows and execute them.

    With $TETHER_ALERT_WEBHOOK set it also watches for stuck runs, flagged changes, spend
    limits and unserved versions, and POSTs alerts there (see `tether alerts`)."""
    configure_logging(log_level)
    application = load_app(app, store)
    open_sqlite_now(application)
    # Spans go out over OTLP when the standard OTEL_EXPORTER_OTLP_* settings are present.
    from tether.observe.export import instrument

    instrument(application)
    names = ", ".join(application.workflow_names()) or "none"
    log.info("app %s on %s; workflows: %s", app, redact_url(application.store.url), names)

    async def report(run_id: str, status: str) -> None:
        # One line per run outcome: what an operator tails the log for.
        if status in ("failed", "refused"):
            run = await application.store.get_run(run_id)
            error = error_line(run.error if run else None, 300)
            log.warning("run %s %s: %s", run_id, status, error or "no error recorded")
        elif status in ("succeeded", "cancelled"):
            log.info("run %s %s", run_id, status)
        else:
            log.debug("run %s %s", run_id, status)

    application.executor.listeners.append(report)
    asyncio.run(_serve(application, concurrency, worker_id, grace))
    _exit_without_stuck_steps(application)


def _exit_without_stuck_steps(application: App) -> None:
    """Don't let a plain ``def`` step that outlived the grace period hold the process open.

    Its run was already handed back; the thread cannot be interrupted, and the interpreter
    joins pool threads at exit, which could take forever. Whatever the thread does now is
    fenced off from the journal.
    """
    # Idle pool threads leave at once after shutdown; only busy ones remain.
    application._threads.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + 0.5
    for thread in threading.enumerate():
        if thread.name.startswith("tether-step"):
            thread.join(max(0.0, deadline - time.monotonic()))
    busy = [t for t in threading.enumerate() if t.name.startswith("tether-step") and t.is_alive()]
    if not busy:
        return
    log.warning(
        "abandoning %d step thread(s) still running after the grace period; their runs were "
        "handed back to other workers",
        len(busy),
    )
    logging.shutdown()
    sys.stdout.flush()
    os._exit(0)


async def _serve(application: App, concurrency: int, name: str | None, grace: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        signame = signal_module.Signals(signum).name
        if not stop.is_set():
            log.info(
                "%s received: no new runs; in-flight runs get %.1fs to finish (send again to "
                "exit now)",
                signame,
                grace,
            )
            stop.set()
            return
        # Leases of the runs still held expire and other workers take them over.
        log.warning("second %s: exiting now; held runs are taken over after their lease", signame)
        logging.shutdown()
        os._exit(130)

    for sig in (signal_module.SIGTERM, signal_module.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    watchdog = asyncio.create_task(_watch_loop_lag(application.lease_seconds))
    try:
        await application.run_worker_async(
            concurrency=concurrency, name=name, stop=stop, grace_period=grace
        )
    finally:
        watchdog.cancel()


async def _watch_loop_lag(lease_seconds: float) -> None:
    """Warn when something blocks the event loop (an ``async def`` step calling blocking
    code): heartbeats cannot run meanwhile, so leases may expire and other workers take the
    runs over and execute their steps a second time."""
    tick = min(0.25, lease_seconds / 6)
    threshold = lease_seconds / 3
    while True:
        before = time.monotonic()
        await asyncio.sleep(tick)
        lag = time.monotonic() - before - tick
        if lag >= threshold:
            log.warning(
                "the event loop was blocked for %.1fs (lease %.1fs): the process paused "
                "(SIGSTOP, a suspended VM), or an async step doing blocking work? Leases may "
                "expire and runs be taken over; make blocking steps plain `def` (they run in "
                "a thread) or await non-blocking calls",
                lag,
                lease_seconds,
            )
