"""Signing in to the dashboard in a real headless Chromium, against the real server and worker:
each role sees only the actions it may take, a reviewer approves as themselves, and a change
the page did not send (no CSRF token) is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
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
from tether.access.principals import create_principal
from tether.server.auth import Auth

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


def new_page(browser: Browser) -> Page:
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.set_default_timeout(15_000)
    return page


@contextmanager
def reviewed_run(tmp_path: Path) -> Iterator[tuple[str, tether.App, dict[str, str], str, str]]:
    """A server that requires sign-in, principals, and a run started by olga waiting for a
    reviewer; yields the base URL, an App, the tokens, the run id and the request id."""
    from tests.integration.trust_workflows import make_app

    outbox: list[dict[str, Any]] = []
    policy = tether.Policy({"read": "auto", "send": "review"})
    with dashboard(tmp_path, lambda url: make_app(url, policy, outbox), auth=Auth()) as (base, app):
        tokens: dict[str, str] = {}
        for name, roles, categories in (("vic", "viewer", None), ("olga", "operator,reviewer", None),
                                        ("rita", "reviewer", "send")):
            _, tokens[name] = app.portal.run(
                create_principal(app.store, name, roles, categories=categories)
            )
        run_id = app.start("outreach", {"to": "ceo@acme.com", "body": "Hi, freight."},
                           started_by="olga").id
        wait_until(lambda: app.get_run(run_id).status == "waiting", 15, "run never waited")
        (approval,) = [a for a in app.approvals() if a.run_id == run_id]
        yield base, app, tokens, run_id, approval.id


def sign_in(page: Page, base: str, token: str, target: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{base}{target}")
    expect(page).to_have_url(f"{base}/login?next={target.replace('/', '%2F')}")
    page.fill('input[name="token"]', token)
    page.click('form.login-form button[type="submit"]')
    expect(page).to_have_url(f"{base}{target}")


def test_each_role_sees_only_the_actions_it_may_take(browser: Browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    shots = screenshot_dir(tmp_path)
    with reviewed_run(tmp_path) as (base, _app, tokens, run_id, approval_id):
        viewer = new_page(browser)
        viewer.goto(f"{base}/login")
        viewer.fill('input[name="token"]', "tether_wrong")
        viewer.click('form.login-form button[type="submit"]')
        expect(viewer.locator("#login-error")).to_contain_text("not valid")
        sign_in(viewer, base, tokens["vic"], f"/runs/{run_id}")
        expect(viewer.locator("#signed-in")).to_contain_text("signed in as vic")
        expect(viewer.locator("#run-header")).to_contain_text("olga")  # started by
        expect(viewer.locator("#actions")).to_have_count(0)
        viewer.goto(f"{base}/approvals/{approval_id}")
        expect(viewer.locator(f'[data-refused="{approval_id}"]')).to_contain_text("vic is not a reviewer")
        expect(viewer.locator('form[data-kind="approve"]')).to_have_count(0)
        viewer.screenshot(path=str(shots / "viewer-approval.png"), full_page=True)

        operator = new_page(browser)
        sign_in(operator, base, tokens["olga"], f"/runs/{run_id}")
        expect(operator.locator('#actions form[data-kind="cancel"]')).to_have_count(1)
        operator.goto(f"{base}/approvals/{approval_id}")
        expect(operator.locator(f'[data-refused="{approval_id}"]')).to_contain_text("olga started run")
        expect(operator.locator('form[data-kind="approve"]')).to_have_count(0)
        # Signing out ends the session: the next page asks to sign in again.
        operator.click("form.logout button")
        expect(operator).to_have_url(f"{base}/login")
        operator.goto(f"{base}/runs")
        expect(operator).to_have_url(f"{base}/login?next=%2Fruns")


def test_a_reviewer_signs_in_and_approves_as_themselves(browser: Browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with reviewed_run(tmp_path) as (base, app, tokens, run_id, approval_id):
        page = new_page(browser)
        sign_in(page, base, tokens["rita"], f"/approvals/{approval_id}")
        card = page.locator("article.approval")
        approve = card.locator('form[data-kind="approve"]')
        expect(approve).to_contain_text("approve as rita")
        expect(approve.locator('input[name="reviewer"]')).to_have_count(0)  # no name to type
        approve.locator('button[type="submit"]').click()
        expect(page.locator("#flash")).to_contain_text("approved")
        expect(card.locator(".badge").first).to_have_text("approved")
        assert app.get_approval(approval_id).decided_by == "rita"
        wait_until(lambda: app.get_run(run_id).status == "succeeded", 20, "run did not resume")
        page.goto(f"{base}/audit")
        row = page.locator('tr[data-action="approval.approve"]')
        expect(row).to_contain_text("rita")
        expect(row).to_contain_text(approval_id)
        expect(row).to_contain_text("dashboard")


def test_a_change_without_the_pages_csrf_token_is_refused(browser: Browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with reviewed_run(tmp_path) as (base, app, tokens, run_id, _):
        page = new_page(browser)
        sign_in(page, base, tokens["olga"], f"/runs/{run_id}")
        session = [c for c in page.context.cookies() if c["name"] == "tether_session"]
        assert session and session[0]["httpOnly"] and session[0]["sameSite"] == "Strict"
        # The session cookie alone (what a forged request would ride on) changes nothing.
        forged = page.request.post(
            f"{base}/api/runs/{run_id}/cancel", data=json.dumps({}),
            headers={"Content-Type": "application/json"},
        )
        assert forged.status == 403 and forged.json()["error"]["type"] == "CSRFTokenMissing"
        assert app.get_run(run_id).status == "waiting"
        # Every form on the page carries the token; the page's own cancel goes through.
        forms = page.locator("form[data-api]")  # cancel, and fork below the journal
        assert forms.count() >= 2
        for i in range(forms.count()):
            assert forms.nth(i).locator('input[name="csrf_token"]').get_attribute("value")
        page.on("dialog", lambda dialog: dialog.accept())
        page.click('form[data-kind="cancel"] button[type="submit"]')
        expect(page.locator("#run-header [data-status]")).to_have_text("cancelled")
        assert app.get_run(run_id).status == "cancelled"
