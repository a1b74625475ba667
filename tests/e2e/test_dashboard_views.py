"""The dashboard's views in a real headless Chromium, against the real server and a worker:
an approval that reads as an email and is decided from the keyboard, the run page that offers
the review (not a signal form) for an approval wait, the trace with its wait marked and
folded, runs search and pages, and the workers page. Screenshots are checked structurally
(the elements are there), never pixel by pixel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import tether
from tests.e2e.dashboard_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    dashboard,
    require_chromium,
    screenshot_dir,
    wait_until,
)
from tests.integration.trust_workflows import make_app

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

LETTER = "Hi Ann,\n\nWe cut freight costs 12% for Globex last quarter.\n\nBest,\nBo"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()


def reviewed(url: str) -> tether.App:
    outbox: list[dict[str, Any]] = []
    return make_app(url, tether.Policy({"read": "auto", "send": "review"}), outbox,
                    lease_seconds=2.0)


def test_an_email_approval_is_read_as_an_email_and_approved_from_the_keyboard(
    page: Page, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    shots = screenshot_dir(tmp_path)
    with dashboard(tmp_path, reviewed) as (base, app):
        run_id = app.start("outreach", {"to": "ann@globex.example", "body": LETTER}).id
        wait_until(lambda: app.get_run(run_id).status == "waiting", 20, "run never waited")
        (approval,) = [a for a in app.approvals() if a.run_id == run_id]

        # The run page sends the reviewer to the request; it offers no signal form for it.
        page.goto(f"{base}/runs/{run_id}")
        expect(page.locator("#decide-link")).to_have_attribute("href", f"/approvals/{approval.id}")
        expect(page.locator('form[data-kind="signal"]')).to_have_count(0)
        # Nor does the API take a plain signal of that name: the run keeps waiting.
        refused = page.request.post(
            f"{base}/api/runs/{run_id}/signal",
            data={"name": f"approval:{approval.id}", "data": {"approved": True}},
        )
        assert refused.status == 400 and "tether approve" in refused.json()["error"]["message"]
        assert app.get_run(run_id).status == "waiting"
        # Let the wait grow past a second, so the trace has a gap to mark.
        wait_until(lambda: time.time() - app.get_run(run_id).steps[-1].started_at.timestamp() > 1.2,
                   10, "the wait did not last")

        page.click("#decide-link")
        body = page.locator(".email-body")
        expect(body).to_be_visible()
        assert body.inner_text() == LETTER  # line breaks kept, no "\n" escapes
        assert body.evaluate("e => e.scrollWidth <= e.clientWidth")  # no sideways scrolling
        expect(page.locator(".email-headers")).to_contain_text("ann@globex.example")
        expect(page.locator("#hotkeys")).to_be_visible()
        page.screenshot(path=str(shots / "approval.png"), full_page=True)

        page.keyboard.press("a")
        approve = page.locator('form[data-kind="approve"] button[type="submit"]')
        expect(approve).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#flash")).to_contain_text("approved")
        wait_until(lambda: app.get_run(run_id).status == "succeeded", 20, "run never finished")

        # The trace: nested spans, the wait marked as a gap, folded subtrees, real-time axis.
        page.goto(f"{base}/runs/{run_id}")
        trace = page.locator("#trace-view")
        expect(trace.locator('.trace-row[data-kind="workflow"]')).to_have_count(1)
        expect(trace.locator('.trace-row[data-kind="wait"]')).to_have_count(1)
        expect(trace.locator('.trace-axis [data-gap="wait"]')).to_have_count(1)
        expect(page.locator('[data-gap-legend="wait"]')).to_contain_text("waited for approval:")
        rows = trace.locator(".trace-row[data-span]:visible")
        total = rows.count()
        assert total >= 4
        page.screenshot(path=str(shots / "trace.png"), full_page=True)
        trace.locator('.trace-row[data-kind="workflow"] .twisty').click()
        expect(rows).to_have_count(1)
        trace.locator('.trace-row[data-kind="workflow"] .twisty').click()
        expect(rows).to_have_count(total)
        folded_width = trace.locator('.trace-axis [data-gap="wait"]').bounding_box()
        page.uncheck("#fold-gaps")
        expect(trace).to_have_attribute("data-folded", "0")
        real_width = trace.locator('.trace-axis [data-gap="wait"]').bounding_box()
        assert folded_width is not None and real_width is not None
        assert real_width["width"] > folded_width["width"]  # collapsed, the wait is narrow
        page.fill("#trace-zoom", "4")
        zoomed = trace.bounding_box()
        assert zoomed is not None and zoomed["width"] > 1280


def digest_app(url: str) -> tether.App:
    app = tether.App(url, lease_seconds=2.0)

    @app.workflow(name="digest")
    async def digest(ctx: tether.Context, n: int) -> int:
        return n

    return app


def test_runs_search_pages_and_the_workers_page(page: Page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    shots = screenshot_dir(tmp_path)
    with dashboard(tmp_path, digest_app) as (base, app):
        ids = [app.start("digest", {"n": n}, run_id=f"digest-{n:02d}",
                         labels={"tenant": "acme" if n % 2 else "globex"}).id for n in range(5)]
        wait_until(lambda: all(app.get_run(i).status == "succeeded" for i in ids), 20,
                   "runs never finished")

        page.goto(f"{base}/runs?limit=2")
        expect(page.locator("tr[data-run]")).to_have_count(2)
        seen = [page.locator("tr[data-run]").nth(i).get_attribute("data-run") for i in range(2)]
        page.click("#page-next")
        expect(page.locator("tr[data-run]")).to_have_count(2)
        seen += [page.locator("tr[data-run]").nth(i).get_attribute("data-run") for i in range(2)]
        page.click("#page-next")
        expect(page.locator("tr[data-run]")).to_have_count(1)
        seen.append(page.locator("tr[data-run]").first.get_attribute("data-run"))
        expect(page.locator("#page-next")).to_have_count(0)
        assert seen == sorted(ids, reverse=True)

        page.goto(f"{base}/runs")
        page.fill('input[name="q"]', "digest-03")
        page.press('input[name="q"]', "Enter")
        expect(page.locator("tr[data-run]")).to_have_count(1)
        expect(page.locator('tr[data-run="digest-03"]')).to_be_visible()
        page.fill('input[name="q"]', "tenant=acme")
        page.press('input[name="q"]', "Enter")
        expect(page.locator("tr[data-run]")).to_have_count(2)
        page.select_option('select[name="range"]', "1h")
        expect(page.locator("tr[data-run]")).to_have_count(2)
        page.screenshot(path=str(shots / "runs-search.png"), full_page=True)

        page.click('a[href="/workers"]')
        expect(page.locator("tr[data-worker]")).to_have_count(1)
        expect(page.locator("tr[data-worker] [data-heartbeat]")).to_contain_text("ago")
        expect(page.locator("tr[data-worker]")).to_contain_text("digest@")
        page.screenshot(path=str(shots / "workers.png"), full_page=True)


def priced_app(url: str) -> tether.App:
    from tether.observe import names as n

    app = tether.App(url, lease_seconds=2.0)

    def chat(model: str) -> str:
        step = tether.current_step()
        step.set_meta(**{n.OPERATION_NAME: n.OP_CHAT, n.REQUEST_MODEL: model,
                         n.RESPONSE_MODEL: model, n.NODE: "drafter"})
        step.add_usage(tether.Usage(llm_calls=1, input_tokens=900, output_tokens=100,
                                    cost_usd=0.004))
        return model

    @app.workflow(name="draft")
    async def draft(ctx: tether.Context, model: str) -> str:
        return await ctx.run_step("chat", chat, (model,))

    return app


def test_stats_and_cost_charts_with_choices_from_the_data(page: Page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    shots = screenshot_dir(tmp_path)
    with dashboard(tmp_path, priced_app) as (base, app):
        ids = [app.start("draft", {"model": model}, labels={"tenant": tenant}).id
               for model, tenant in (("gpt-4.1", "acme"), ("gpt-4.1-mini", "globex"),
                                     ("gpt-4.1", "globex"))]
        wait_until(lambda: all(app.get_run(i).status == "succeeded" for i in ids), 20,
                   "runs never finished")
        page.goto(f"{base}/cost?since=1h&by=model")
        # Group by a label key found in the data, from a select.
        page.select_option('select[name="by"]', "tenant")
        expect(page.locator('svg#chart-spend [data-series="globex"]').first).to_be_attached()
        expect(page.locator('[data-legend="acme"]')).to_be_visible()
        page.screenshot(path=str(shots / "cost.png"), full_page=True)

        page.goto(f"{base}/stats?since=1h")
        page.select_option('select[name="by"]', "model")
        for chart in ("chart-p95", "chart-p50", "chart-failures", "chart-spend"):
            expect(page.locator(f"svg#{chart}")).to_be_visible()
        expect(page.locator('svg#chart-p95 [data-series="gpt-4.1-mini"]').first).to_be_attached()
        assert page.locator('input[name="by"]').count() == 0  # no free-text group-by
        page.screenshot(path=str(shots / "stats.png"), full_page=True)
