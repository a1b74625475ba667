"""The dashboard in a real headless Chromium, against the real server and a real worker.

An operator's path: the runs list → filter → a waiting run's page → send the signal it waits
for → watch the run resume and finish on the page, without reloading it. And the mistakes a
person makes: malformed JSON in the signal form, cancelling a run.
"""

from __future__ import annotations

import re
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

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

if TYPE_CHECKING:  # playwright is a dev dependency; the fixtures skip without it
    from playwright.sync_api import Browser, Page


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
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()


def test_signal_from_the_run_page_resumes_the_run(page: Page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    shots = screenshot_dir(tmp_path)
    with dashboard(tmp_path) as (base, app):
        failed = app.start("broken").id
        waiting = app.start("outreach", {"company": "acme"}, labels={"team": "sales"}).id
        wait_until(lambda: app.get_run(waiting).status == "waiting", 15, "run never waited")
        wait_until(lambda: app.get_run(failed).status == "failed", 15, "run never failed")

        page.goto(f"{base}/runs")
        expect(page.locator(f'tr[data-run="{waiting}"] [data-status]')).to_have_text("waiting")
        expect(page.locator(f'tr[data-run="{failed}"] [data-status]')).to_have_text("failed")
        expect(page.locator(f'tr[data-run="{failed}"]')).to_contain_text("HTTP 503")
        page.screenshot(path=str(shots / "runs.png"), full_page=True)

        # The status filter narrows the list to what needs a human.
        page.click('a[data-filter="waiting"]')
        expect(page).to_have_url(re.compile(r"/runs\?status=waiting$"))
        expect(page.locator("tr[data-run]")).to_have_count(1)

        page.click(f'a[href="/runs/{waiting}"]')
        expect(page).to_have_url(f"{base}/runs/{waiting}")
        header = page.locator("#run-header")
        expect(header.locator("[data-status]")).to_have_text("waiting")
        expect(page.locator("#waiting-for")).to_have_text("approval")
        expect(header).to_contain_text("team=sales")
        expect(header).to_contain_text("3,000")  # tokens of the research step
        expect(page.locator("tr[data-seq]")).to_have_count(2)  # research, then the wait
        page.screenshot(path=str(shots / "run-waiting.png"), full_page=True)

        # A typo in the JSON is caught in the page; nothing is sent.
        page.fill('form[data-kind="signal"] textarea[name="data"]', "{approved: yes}")
        page.click('form[data-kind="signal"] button[type="submit"]')
        expect(page.locator("#flash")).to_contain_text("data is not valid JSON")
        assert app.get_run(waiting).status == "waiting"

        page.fill('form[data-kind="signal"] textarea[name="data"]', '{"approved": true}')
        page.click('form[data-kind="signal"] button[type="submit"]')
        expect(page.locator("#flash")).to_contain_text("signal 'approval' delivered")

        # The worker resumes the run; the open page follows it to the end by itself.
        expect(header.locator("[data-status]")).to_have_text("succeeded", timeout=20_000)
        expect(page.locator("tr[data-seq]")).to_have_count(3)
        expect(page.locator("#run-output")).to_contain_text("sent to ceo@acme.example")
        expect(page.locator('form[data-kind="signal"]')).to_have_count(0)
        page.screenshot(path=str(shots / "run-succeeded.png"), full_page=True)
        assert app.get_run(waiting).output["decision"] == {"approved": True}

        # Fork from the wait: the new run reuses the research step and waits again.
        page.click("#fork summary")  # the fork form is folded away below the journal
        page.fill('form[data-kind="fork"] input[name="from_step"]', "2")
        page.click('form[data-kind="fork"] button[type="submit"]')
        expect(page).not_to_have_url(f"{base}/runs/{waiting}")
        expect(page.locator(f'#run-header a[href="/runs/{waiting}"]')).to_have_text(waiting)
        expect(page.locator("#run-header [data-status]")).to_have_text("waiting", timeout=20_000)
        forked = page.url.rsplit("/", 1)[1]
        assert [s.name for s in app.get_run(forked).steps] == ["research", "approval"]


def test_cancel_from_the_run_page(page: Page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with dashboard(tmp_path) as (base, app):
        run_id = app.start("outreach", {"company": "globex"}).id
        wait_until(lambda: app.get_run(run_id).status == "waiting", 15, "run never waited")
        # The list is live: a run started after the page loaded shows up without a reload.
        page.goto(f"{base}/runs")
        later = app.start("broken").id
        expect(page.locator(f'tr[data-run="{later}"]')).to_be_visible()
        expect(page.locator(f'tr[data-run="{later}"] [data-status]')).to_have_text("failed")

        # What someone is typing survives the page's refreshes.
        page.goto(f"{base}/runs/{run_id}")
        page.fill('form[data-kind="signal"] textarea[name="data"]', '{"note": "half-typed')
        page.click('tr[data-seq="1"] summary')  # and an expanded step stays expanded
        for _ in range(2):
            before = page.locator("#refresh-state").inner_text()
            page.wait_for_function(
                "before => document.getElementById('refresh-state').textContent !== before",
                arg=before,
            )
        expect(page.locator('form[data-kind="signal"] textarea[name="data"]')).to_have_value(
            '{"note": "half-typed'
        )
        expect(page.locator('tr[data-seq="1"] details')).to_have_attribute("open", "")
        page.fill('form[data-kind="signal"] textarea[name="data"]', "")

        page.once("dialog", lambda dialog: dialog.accept())
        page.click('form[data-kind="cancel"] button[type="submit"]')
        expect(page.locator("#run-header [data-status]")).to_have_text("cancelled")
        expect(page.locator("#run-header")).to_contain_text("cancelled from the dashboard")
        assert app.get_run(run_id).status == "cancelled"


def test_a_reviewer_approves_with_an_edit_and_the_run_sends_it(page: Page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from tests.integration.trust_workflows import make_app

    outbox: list[dict[str, Any]] = []
    policy = tether.Policy({"read": "auto", "send": "review"})
    shots = screenshot_dir(tmp_path)
    with dashboard(tmp_path, lambda url: make_app(url, policy, outbox)) as (base, app):
        run_id = app.start(
            "outreach", {"to": "ceo@acme.com", "body": "Hi [NAME], we cut freight costs."},
        ).id
        wait_until(lambda: app.get_run(run_id).status == "waiting", 15, "run never waited")

        page.goto(f"{base}/runs/{run_id}")
        page.click("#approval-link")
        card = page.locator("article.approval")
        expect(card).to_contain_text("send_email")
        expect(card).to_contain_text("Hi [NAME], we cut freight costs.")
        expect(card).to_contain_text("1,500 tokens")  # the reviewer sees what the run spent
        expect(card.locator("table.journal")).to_contain_text("research")
        page.screenshot(path=str(shots / "approval.png"), full_page=True)

        approve = card.locator('form[data-kind="approve"]')
        approve.locator('textarea[name="edits"]').fill('{"body": "Hi Dana, we cut freight costs."}')
        approve.locator('button[type="submit"]').click()
        expect(page.locator("#flash")).to_contain_text("approved")
        expect(card.locator(".badge").first).to_have_text("approved")

        wait_until(lambda: app.get_run(run_id).status == "succeeded", 20, "run did not resume")
        assert [m["body"] for m in outbox] == ["Hi Dana, we cut freight costs."]
        page.goto(f"{base}/runs/{run_id}")
        expect(page.locator("#run-header [data-status]")).to_have_text("succeeded")


def test_raise_the_budget_of_a_paused_run(page: Page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with dashboard(tmp_path) as (base, app):
        run_id = app.start(
            "digest", {"companies": ["acme", "globex", "initech"]},
            budget=tether.Budget(max_llm_calls=1, on_exceed="suspend"),
        ).id
        wait_until(lambda: app.get_run(run_id).waiting_for == "tether.budget", 15, "no pause")
        page.goto(f"{base}/runs/{run_id}")
        form = page.locator('form[data-kind="budget"]')
        expect(form).to_contain_text("paused on its budget")
        form.locator("textarea").fill('{"max_llm_calls": 10, "on_exceed": "suspend"}')
        form.locator('button[type="submit"]').click()
        expect(page.locator("#flash")).to_contain_text("budget raised")
        expect(page.locator("#run-header [data-status]")).to_have_text("succeeded", timeout=20_000)
        expect(page.locator("#run-header")).to_contain_text("max_llm_calls=10")
        assert len(app.get_run(run_id).output) == 3
