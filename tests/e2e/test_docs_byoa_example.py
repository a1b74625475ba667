"""docs/byoa.md's first example, as written: saved as ``support_app.py`` it is the module that
``tether worker --app support_app:app`` imports — the import must build the agent (its MCP
toolset named, as tether's steps need) and queue nothing, or the worker never starts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import tether

DOC = Path(__file__).resolve().parents[2] / "docs" / "byoa.md"


def example() -> str:
    found = re.search(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert found is not None
    return found.group(1)


def test_the_example_imports_as_a_worker_module_and_queues_nothing(tmp_path: Path) -> None:
    (tmp_path / "support_app.py").write_text(example(), encoding="utf-8")
    # The example names an OpenAI model; building the agent needs a key, nothing is sent.
    env = {**os.environ, "OPENAI_API_KEY": "test-key"}
    try:
        done = subprocess.run([sys.executable, "-c", "import support_app"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise AssertionError("importing the example blocked: it starts a run and follows its "
                             "events at import time, so a worker importing it never starts") from None
    assert done.returncode == 0, done.stderr[-2000:]
    app = tether.App(f"sqlite:///{tmp_path / 'support.db'}")
    try:
        assert app.list_runs() == []
    finally:
        app.close()
