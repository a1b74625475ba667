"""The `tether` command. Each module adds its commands to `cli`."""

from __future__ import annotations

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

    cli()


__all__ = ["cli", "main"]
