"""CLI tables in an 80-column terminal: identifiers are wrapped onto their own lines, never
cut with an ellipsis."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

import tether
from tether.cli.render import run_view, runs_table
from tether.cli.trust import trust_table
from tether.trust.evidence import CategoryStats, TrustReportRow


def rendered(renderable: object, width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_trust_table_keeps_long_names_whole_at_80_and_120_columns() -> None:
    stats = CategoryStats(agent="case_study_writer_v2", category="publish_external_blog",
                          reviews=12, approved=10, unedited=8, edited=2, rejected=1, expired=1,
                          auto=40, auto_failures=3, denied=2)
    row = TrustReportRow(
        agent="case_study_writer_v2", category="publish_external_blog", ring="review",
        stats=stats, changes=[],
        recommendation="keep review: 8/12 approved unedited (needs 10 in a row for auto)",
    )
    for width in (80, 120):
        text = rendered(trust_table([row]), width)
        assert all(len(line) <= width for line in text.splitlines()), text
        assert "…" not in text
        assert "case_study_writer_v2" in text and "publish_external_blog" in text
        assert "12: 8/2/1/1" in text and "40 (3)" in text
        assert all(word in text for word in row.recommendation.split())  # wrapped, not cut


def test_show_keeps_long_step_names_whole_at_80_columns(tmp_path: Path) -> None:
    app = tether.App(f"sqlite:///{tmp_path / 't.db'}")
    long_names = ["enrich_company_profile_from_crm", "summarise_case_study_for_outreach_v2"]

    @app.workflow(name="case_study_pipeline_for_enterprise_accounts")
    async def pipeline(ctx: tether.Context) -> None:
        for name in long_names:
            await ctx.run_step(name, lambda: "x" * 200)

    try:
        info = app.run("case_study_pipeline_for_enterprise_accounts", {})
        text = rendered(run_view(info), 80)
        assert all(len(line) <= 80 for line in text.splitlines()), text
        assert "…" not in text
        for name in long_names:
            assert name in text, text
        listing = rendered(runs_table([info]), 80)
        assert "…" not in listing and info.id in listing
    finally:
        app.close()


def test_runs_detail_wraps_without_losing_letters_at_76_to_100_columns(tmp_path: Path) -> None:
    # The detail column used to have min_width=12: with a 6-character "took" (e.g. "437 ms")
    # it got 11 columns at 80, and Rich cropped each folded line by a letter.
    from dataclasses import replace
    from datetime import timedelta

    app = tether.App(f"sqlite:///{tmp_path / 't.db'}")

    @app.workflow(name="hello")
    async def hello(ctx: tether.Context) -> None:
        raise ValueError("no live worker serves hello v1 start one with tether worker --app")

    try:
        info = app.run("hello", {})
        message = "no live worker serves hello v1 start one with tether worker --app"
        for took in (timedelta(milliseconds=1), timedelta(milliseconds=437),
                     timedelta(seconds=754)):
            shown = replace(info, finished_at=info.created_at + took)
            for width in range(76, 101):
                text = rendered(runs_table([shown]), width)
                words = " ".join(text.split())
                assert all(len(line) <= width for line in text.splitlines()), text
                for word in message.split():
                    assert word in words, (width, took, word, text)
    finally:
        app.close()


def test_stats_fit_80_columns_without_cutting_a_number() -> None:
    from tether.cli.observe import stats_tables
    from tether.observe.stats import StatsRow

    rows = [
        StatsRow(group={"node": "case_study_writer_v2"}, runs=1204, steps=98765, calls=98765,
                 failures=12, retries=3, input_tokens=1_234_567, output_tokens=89_012,
                 cost_usd=123.4567, queued_seconds=12.5, latencies=[0.25, 1.5, 30.125]),
        StatsRow(group={"node": "planner"}, runs=7, steps=7, calls=7, latencies=[0.3]),
    ]
    text = "".join(rendered(t, 80) for t in stats_tables(rows, "7d", 80))
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "…" not in text
    for value in ("case_study_writer_v2", "98765", "1323579", "123.4567", "0.001250", "12.5"):
        assert value in text, (value, text)
    # Zero in every group: left out, and said so.
    assert "none in any group: refused, rate wait s" in " ".join(text.split())
    # Wide enough: one table with everything.
    [whole] = stats_tables(rows, "7d", 200)
    assert "$/call" in rendered(whole, 200) and "p95 s" in rendered(whole, 200)
