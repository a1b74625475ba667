"""Worker processes for the PostgreSQL process tests (see tests/e2e/pg_app.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from tests.e2e.pg_app import EXECUTIONS_DDL
from tether.store.postgres import parse_postgres_url

ROOT = Path(__file__).resolve().parents[2]


def prepare(url: str) -> None:
    with psycopg.connect(parse_postgres_url(url)[0], autocommit=True) as conn:
        conn.execute(EXECUTIONS_DDL)


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(parse_postgres_url(url)[0], autocommit=True) as conn:
        return conn.execute(sql.encode(), params).fetchall()


class Workers:
    """Starts, kills and replaces `python -m tests.e2e.pg_app` worker processes."""

    def __init__(self, url: str, log_dir: Path, **env: str) -> None:
        self.url = url
        self.log_dir = log_dir
        self.env = {**os.environ, "TETHER_STORE": url, **env}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = 0

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        self.started += 1
        log = open(self.log_dir / f"worker{self.started}.log", "wb")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.pg_app"],
            cwd=ROOT,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        index = self.procs.index(proc) + 1
        return (self.log_dir / f"worker{index}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.alive():
            with _suppress():
                os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def workers(url: str, log_dir: Path, **env: str) -> Iterator[Workers]:
    pool = Workers(url, log_dir, **env)
    try:
        yield pool
    finally:
        pool.stop_all()


def wait_until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.05)


@contextmanager
def _suppress() -> Iterator[None]:
    try:
        yield
    except ProcessLookupError:
        pass
