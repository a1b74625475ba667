"""A stand-in for an agent that sends email, for the trust tests: it asks the trust gate before
every tool call, as the agents layer does, and revises its draft after a rejection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import tether
from tether.observe.names import NODE, PROMPT_HASH, REQUEST_MODEL, RESPONSE_MODEL, TOOL_NAME
from tether.trust.gate import CheckResult, ToolCallRequest, authorize

EMAIL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "to": {"type": "string", "pattern": "^[^@ ]+@[^@ ]+$"},
        "subject": {"type": "string", "minLength": 1},
        "body": {"type": "string", "minLength": 1, "maxLength": 500},
    },
    "required": ["to", "subject", "body"],
    "additionalProperties": False,
}


_open: list[tether.App] = []


@pytest.fixture(autouse=True)
def close_apps() -> Iterator[None]:
    """Close every App a test made (PostgreSQL pools otherwise outlive the test's loop)."""
    yield
    while _open:
        _open.pop().close()


def make_app(
    url: str, policy: tether.Policy | None, outbox: list[dict[str, Any]], *,
    lease_seconds: float = 10.0,
) -> tether.App:
    """An App with the workflow ``outreach``; sent emails land in `outbox` (keyed by the
    step's idempotency key, so a re-run step would show up as a duplicate key)."""
    app = tether.App(url, policy=policy, lease_seconds=lease_seconds)
    _open.append(app)
    flaky = {"left": 1}

    def send_email(to: str, subject: str, body: str) -> str:
        if body.startswith("FAIL"):
            raise RuntimeError("mail server refused the message")
        outbox.append({"key": tether.current_step().idempotency_key, "to": to,
                       "subject": subject, "body": body})
        return f"sent to {to}"

    def research(company: str) -> dict[str, Any]:
        step = tether.current_step()
        if flaky["left"] > 0:  # one transient failure, so the snapshot shows a retry
            flaky["left"] -= 1
            raise ConnectionError("search timed out")
        step.add_usage(tether.Usage(llm_calls=1, input_tokens=1200, output_tokens=300,
                                    cost_usd=0.0042))
        step.set_meta(**{REQUEST_MODEL: "gpt-4.1-mini", RESPONSE_MODEL: "gpt-4.1-mini-2025-04-14",
                         PROMPT_HASH: "3fa2c0ffee", NODE: "drafter"})
        return {"company": company, "industry": "logistics"}

    @app.workflow
    async def outreach(
        ctx: tether.Context,
        to: str,
        body: str,
        check_ok: bool = True,
        drafts: int = 1,
        agent: str = "drafter",
    ) -> dict[str, Any]:
        await ctx.run_step("research", research, ("acme",), meta={NODE: agent},
                           retry=tether.Retry(max_attempts=3, initial_delay=0.01))
        results: list[dict[str, Any]] = []
        for draft in range(drafts):
            args = {"to": to, "subject": "Hello", "body": body if draft == 0 else f"{body} v{draft + 1}"}
            auth = await authorize(
                ctx,
                ToolCallRequest(
                    agent=agent,
                    tool="send_email",
                    risk="send",
                    args=args,
                    args_schema=EMAIL_SCHEMA,
                    checks=(CheckResult("no_placeholders", check_ok,
                                        "" if check_ok else "body still has [NAME]"),),
                    call_id=f"call-{draft}",
                ),
            )
            if auth.decision != "run":
                results.append({"decision": auth.decision, "reason": auth.reason})
                continue
            sent = await ctx.run_step("send_email", send_email, kwargs=auth.args,
                                      meta={TOOL_NAME: "send_email", NODE: agent})
            results.append({"decision": "run", "sent": sent, "args": auth.args,
                            "reviewer": auth.reviewer})
            break
        return {"results": results}

    return app
