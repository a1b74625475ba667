"""Mutation check of the guarantee-bearing code: break each guarantee on purpose, run the tests
that should notice, and report which breakages (mutants) no test caught.

    python scripts/mutate.py                 # every mutant in scripts/mutants.py and mutants_layers.py
    python scripts/mutate.py -k fencing,gate # only mutants whose name contains one of these
    python scripts/mutate.py --list          # names, files and the tests each one runs
    python scripts/mutate.py --baseline      # first check the selected tests pass unmutated

Each mutant is applied to a copy of ``src/`` in a temporary directory, never to the working
tree; the tests run from the repository with ``PYTHONPATH`` pointing at the copy (worker
subprocesses inherit it). A mutant whose original text is not found exactly once in its file
is reported ``did not apply``: the code moved, so the list must be updated, and that counts as
a failure of the check, like a survivor. See docs/testing.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutants import MUTANTS as FIRST
from mutants import Mutant
from mutants_layers import LAYER_MUTANTS

MUTANTS = [*FIRST, *LAYER_MUTANTS]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def apply(mutant: Mutant, src: Path) -> str | None:
    """Edit the copy under `src`; return why it did not apply, or None."""
    texts: dict[str, str] = {}
    for edit in mutant.edits:
        file, old, new = edit if len(edit) == 3 else (mutant.file, *edit)
        if file not in texts:
            if not (src / file).is_file():
                return f"{file}: no such file"
            texts[file] = (src / file).read_text()
        count = texts[file].count(old)
        if count != 1:
            where = "not found" if count == 0 else f"found {count} times"
            return f"{file}: original text {where}: {old.strip()[:70]!r}"
        texts[file] = texts[file].replace(old, new)
    for file, text in texts.items():
        (src / file).write_text(text)
    return None


def run_tests(mutant: Mutant, src: Path, timeout: float, verbose: bool) -> tuple[str, str]:
    """Run the mutant's tests against `src`; return (verdict, detail)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src)
    env.setdefault("TETHER_TEST_POSTGRES", DEFAULT_POSTGRES)
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
               "-o", "addopts=", *mutant.tests]
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return "killed", f"timed out after {timeout:.0f}s (the tests hung)"
    out = done.stdout + done.stderr
    if verbose:
        print(out)
    lines = [line for line in out.splitlines() if line.strip()]
    summary = lines[-1] if lines else "(no output)"
    if done.returncode == 0:
        return "survived", summary
    if done.returncode == 1:  # tests ran and some failed
        failed = [line.split(" ", 1)[1].split(" - ")[0] for line in lines
                  if line.startswith("FAILED ")]
        errors = [line[1:].strip() for line in lines if line.startswith("E ")]
        # The test and its first error line: a kill by an SQL or syntax error in the mutant
        # itself is no evidence, and shows here.
        test = failed[0].rsplit("/", 1)[-1] if failed else summary
        return "killed", f"{test}: {errors[0][:100] if errors else '?'}"
    # 2: interrupted/collection error, 4: usage error, 5: no tests collected
    return "error", f"pytest exit code {done.returncode}: {summary}"


def fresh_copy(tmp: Path) -> Path:
    src = tmp / "src"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
    return src


def check_copy_is_imported(src: Path) -> None:
    """Refuse to run if `tether` would be imported from somewhere else than the copy."""
    env = dict(os.environ, PYTHONPATH=str(src))
    where = subprocess.run([sys.executable, "-c", "import tether; print(tether.__file__)"],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    if not where.startswith(str(src)):
        sys.exit(f"tether is imported from {where}, not from the mutated copy under {src}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", dest="select", default="",
                        help="only mutants whose name contains one of these (comma-separated)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--baseline", action="store_true",
                        help="first run each mutant's tests unmutated (they must pass)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant")
    parser.add_argument("-v", "--verbose", action="store_true", help="show pytest's output")
    args = parser.parse_args()

    names = [m.name for m in MUTANTS]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        sys.exit(f"mutant names must be unique: {sorted(duplicates)}")
    wanted = [w for w in args.select.split(",") if w] or [""]
    chosen = [m for m in MUTANTS if any(w in m.name for w in wanted)]
    if not chosen:
        sys.exit(f"no mutant name contains {args.select!r}; see --list")
    if args.list:
        for m in chosen:
            files = ", ".join(dict.fromkeys([m.file, *(e[0] for e in m.edits if len(e) == 3)]))
            print(f"{m.name}\n    {files}: {m.why}\n    tests: {' '.join(m.tests)}")
        return 0

    results: list[tuple[str, str, str, float]] = []
    with tempfile.TemporaryDirectory(prefix="tether-mutants-") as tmp:
        check_copy_is_imported(fresh_copy(Path(tmp)))
        if args.baseline:
            for test_set in sorted({tuple(m.tests) for m in chosen}):
                base = Mutant("baseline", "", (), list(test_set), "")
                verdict, detail = run_tests(base, fresh_copy(Path(tmp)), args.timeout, args.verbose)
                if verdict != "survived":
                    print(f"baseline fails for {' '.join(test_set)}: {detail}")
                    return 2
            print("baseline: every selected test passes unmutated")
        for m in chosen:
            src = fresh_copy(Path(tmp))
            started = time.monotonic()
            problem = apply(m, src)
            if problem is not None:
                verdict, detail = "did not apply", problem
            else:
                verdict, detail = run_tests(m, src, args.timeout, args.verbose)
            seconds = time.monotonic() - started
            results.append((m.name, verdict, detail, seconds))
            print(f"{verdict:>13}  {m.name}  ({seconds:.0f}s)  {detail}", flush=True)

    width = max(len(name) for name, *_ in results)
    print(f"\n{'mutant':<{width}}  verdict")
    for name, verdict, _, _ in results:
        print(f"{name:<{width}}  {verdict}")
    bad = [r for r in results if r[1] != "killed"]
    counts = {v: sum(1 for r in results if r[1] == v) for v in
              ("killed", "survived", "did not apply", "error")}
    print("\n" + ", ".join(f"{n} {v}" for v, n in counts.items()))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
