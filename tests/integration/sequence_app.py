"""An App whose `sequence` workflow runs instant steps: the sequential path's shape (a run of
`steps` journaled no-op steps, 12 commits for 10 steps), shared by the SQLite write-path tests."""

from __future__ import annotations

import tether


def sequence_app(url: str) -> tether.App:
    app = tether.App(url)

    @app.step
    async def noop(i: int) -> int:
        return i

    @app.workflow(name="sequence")
    async def sequence(ctx: tether.Context, steps: int = 10) -> int:
        for i in range(steps):
            await noop(i)
        return steps

    return app
