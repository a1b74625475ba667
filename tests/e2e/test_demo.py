"""`tether demo` run as a new user would, non-interactively."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import tether


def _demo_command() -> list[str]:
    # The full CLI needs the runs/worker command modules; until they are on this branch the
    # demo module runs on its own with the same options.
    if importlib.util.find_spec("tether.cli.runs") and importlib.util.find_spec("tether.cli.worker"):
        return [sys.executable, "-m", "tether", "demo"]
    return [sys.executable, "-m", "tether.cli.demo"]


@pytest.mark.timeout(120)
def test_demo_runs_non_interactively(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TETHER_STORE", "TETHER_MODEL")}
    env["COLUMNS"] = "200"
    done = subprocess.run(_demo_command(), cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=110)
    out = done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    db = tmp_path / "tether-demo.db"
    assert str(db) in out  # it says where the store is
    for node in ("researcher", "planner", "case_studies", "selector", "drafter", "sender"):
        assert f"▶ {node}" in out
    assert "SIGKILL" in out and "run taken over" in out
    assert "approving automatically" in out
    assert "were not sent again" in out
    assert "tether show" in out and f"--store sqlite:///{db}" in out

    client = tether.App(f"sqlite:///{db}")
    info = client.list_runs(workflow="titanium")[0]
    assert info.status == "succeeded" and info.recoveries >= 1
    found = re.search(r"model call log: (\S+)", out)
    assert found, out
    calls = [json.loads(line) for line in Path(found.group(1)).read_text().splitlines()]
    journaled = sum(1 for s in info.steps if s.name.endswith(".model"))
    assert len(calls) - journaled in (0, 1)  # at most the call in flight at the kill re-sent
    assert f"model calls journaled: {journaled}; actually sent: {len(calls)}" in out
    # Only the *.db files in the user's folder (SQLite's -wal/-shm aside, and the hidden folder
    # of worker liveness locks).
    assert sorted(p.name for p in tmp_path.iterdir()
                  if not p.name.endswith(("-wal", "-shm")) and not p.name.startswith(".")) \
        == ["tether-demo-outbox.db", "tether-demo.db"]
    with sqlite3.connect(tmp_path / "tether-demo-outbox.db") as outbox:
        sent = outbox.execute("SELECT recipient, body FROM outbox").fetchall()
    assert len(sent) == 1 and "Acme Robotics" in sent[0][1]
    assert "Dana" in out  # the email was shown before approval
    client.close()
