"""The `tether` command. Each module adds its commands to `cli`."""

from __future__ import annotations

import sys

import typer

from tether.cli.common import cli


def main() -> None:
    # Command modules register on import; keep the imports here, in help order.
    from tether.cli import alerts as _alerts  # noqa: F401
    from tether.cli import audit as _audit  # noqa: F401
    from tether.cli import budget as _budget  # noqa: F401
    from tether.cli import demo as _demo  # noqa: F401
    from tether.cli import observe as _observe  # noqa: F401
    from tether.cli import prune as _prune  # noqa: F401
    from tether.cli import runs as _runs  # noqa: F401
    from tether.cli import schedules as _schedules  # noqa: F401
    from tether.cli import serve as _serve  # noqa: F401
    from tether.cli import tokens as _tokens  # noqa: F401
    from tether.cli import trust as _trust  # noqa: F401
    from tether.cli import worker as _worker  # noqa: F401
    from tether.cli import workers as _workers  # noqa: F401

    try:
        code = cli(standalone_mode=False)
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        # The parser's own errors (unknown option, bad value, missing argument: click's
        # `UsageError`, which Typer vendors under another module in recent versions) in the
        # shape of every other error: one line, what was wrong and where the right usage is.
        describe = getattr(exc, "format_message", None)
        status = getattr(exc, "exit_code", None)
        if describe is None or not isinstance(status, int):
            raise
        message = " ".join(str(describe()).split())
        if not message:  # `tether` alone: the help is the answer (printed already)
            sys.exit(status)
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            message += f" (see `{ctx.command_path} --help`)"
        print(f"error: {message}", file=sys.stderr)
        sys.exit(status)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["cli", "main"]
