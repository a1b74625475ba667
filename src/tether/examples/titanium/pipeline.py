"""The Titanium pipeline: research → plan → find case studies → select → draft → send.

Six narrow nodes, each with one job and its own tools. The drafter checks its own email (it
names the company, cites a selected case study, stays short); the sender's one tool has risk
``send``, so the app's policy holds it for a human's approval before it runs — once, with the
approved arguments, idempotent through its `ToolContext.idempotency_key`.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
import time
from typing import Any

import pydantic
from pydantic_ai.models import Model

from tether import Agent, Budget, Scope, Sequential, ToolContext, tool
from tether.agents.state import RunState
from tether.examples.titanium import knowledge

MAX_WORDS = 180


class CompanyProfile(pydantic.BaseModel):
    """What the researcher learned about the target company."""

    name: str
    industry: str
    employees: int | None = None
    summary: str
    challenges: list[str]
    contact_name: str
    contact_email: str


class SearchPlan(pydantic.BaseModel):
    queries: list[str] = pydantic.Field(min_length=1, max_length=4)


class Candidate(pydantic.BaseModel):
    id: str
    title: str
    customer: str
    result: str
    why: str


class Candidates(pydantic.BaseModel):
    candidates: list[Candidate] = pydantic.Field(min_length=1)


class Selection(pydantic.BaseModel):
    case_study_ids: list[str] = pydantic.Field(min_length=1, max_length=2)
    rationale: str


class EmailDraft(pydantic.BaseModel):
    to: str
    subject: str
    body: str


# --- tools -----------------------------------------------------------------------------------


@tool(risk="read")
def search_companies(query: str) -> list[dict[str, Any]]:
    """Search the company database; returns the best matches (name, industry, summary)."""
    return [{"name": c["name"], "industry": c["industry"], "summary": c["summary"]}
            for c in knowledge.search_companies(query)]


@tool(risk="read")
def get_company(name: str) -> dict[str, Any]:
    """The full record of one company by exact name, including challenges and the contact."""
    found = knowledge.get_company(name)
    if found is None:
        return {"error": f"no company named {name!r}; search first"}
    return found


@tool(risk="read")
def search_case_studies(query: str) -> list[dict[str, Any]]:
    """Search the seller's case-study library; returns up to three studies, best first."""
    return [{k: s[k] for k in ("id", "title", "customer", "industry", "challenge", "result")}
            for s in knowledge.search_case_studies(query)]


def outbox_path() -> str:
    """Where sent emails land: ``$TITANIUM_OUTBOX``, else a file in the temp directory."""
    return os.environ.get("TITANIUM_OUTBOX") or os.path.join(
        tempfile.gettempdir(), "titanium-outbox.sqlite")


@tool(risk="send")
def send_email(ctx: ToolContext, to: str, subject: str, body: str) -> dict[str, str]:
    """Send the email. Idempotent: a retried or recovered call sends nothing twice."""
    message_id = "msg-" + hashlib.sha256(ctx.idempotency_key.encode()).hexdigest()[:16]
    with sqlite3.connect(outbox_path(), timeout=30) as db:
        db.execute("CREATE TABLE IF NOT EXISTS outbox (idempotency_key TEXT PRIMARY KEY, "
                   "message_id TEXT, recipient TEXT, subject TEXT, body TEXT, sent_at REAL)")
        inserted = db.execute(
            "INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?, ?, ?)",
            (ctx.idempotency_key, message_id, to, subject, body, time.time())).rowcount
    return {"status": "sent" if inserted else "already sent", "message_id": message_id,
            "to": to}


def sent_emails(path: str | None = None) -> list[dict[str, Any]]:
    """Everything in the outbox (for the demo and tests)."""
    path = path or outbox_path()
    if not os.path.exists(path):
        return []
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute("SELECT * FROM outbox ORDER BY sent_at")]
        except sqlite3.OperationalError:
            return []


# --- the drafter's self-checks ---------------------------------------------------------------


def names_the_company(draft: EmailDraft, state: RunState) -> bool | str:
    company = state.outputs["researcher"]["name"]
    return company in draft.body or f"the email must name the company {company!r}"


def cites_a_selected_case_study(draft: EmailDraft, state: RunState) -> bool | str:
    chosen = set(state.outputs["selector"]["case_study_ids"])
    cited = [c for c in state.outputs["case_studies"]["candidates"]
             if c["id"] in chosen and (c["customer"] in draft.body or c["title"] in draft.body)]
    return bool(cited) or (
        "the email must cite a selected case study by customer or title: "
        + ", ".join(sorted(chosen)))


def within_length(draft: EmailDraft, state: RunState) -> bool | str:
    words = len(draft.body.split())
    if words > MAX_WORDS:
        return f"the body has {words} words; keep it under {MAX_WORDS}"
    return len(draft.subject) <= 90 or "the subject is longer than 90 characters"


# --- the pipeline ----------------------------------------------------------------------------


def build(model: Model | str) -> Sequential:
    """The Titanium pipeline on `model` (a pydantic-ai model name or Model)."""
    researcher = Agent(
        "researcher", model,
        "You research companies for B2B outbound sales. Find {company} with search_companies, "
        "then read its full record with get_company, and return its profile.",
        tools=[search_companies, get_company], output_type=CompanyProfile,
        scope=Scope(domain="B2B sales research for outbound email",
                    instructions="A request naming a company to research and write to is in "
                    "scope; anything else (poems, homework, general questions) is not."),
        budget=Budget(max_llm_calls=8),
    )
    planner = Agent(
        "planner", model,
        "Plan two or three short search queries for case studies that would resonate with "
        "{researcher.name}, a {researcher.industry} company. Their challenges: "
        "{researcher.challenges}.",
        output_type=SearchPlan, budget=Budget(max_llm_calls=4),
    )
    case_studies = Agent(
        "case_studies", model,
        "Search the case-study library with search_case_studies, once for each query in "
        "{planner.queries}. Return up to four distinct candidates with why each fits "
        "{researcher.name}.",
        tools=[search_case_studies], output_type=Candidates, budget=Budget(max_llm_calls=8),
    )
    selector = Agent(
        "selector", model,
        "Choose the one or two candidates most relevant to {researcher.name}'s challenges "
        "{researcher.challenges}, preferring their industry ({researcher.industry}).",
        output_type=Selection, budget=Budget(max_llm_calls=4),
    )
    drafter = Agent(
        "drafter", model,
        f"Write a short, specific outbound email (under {MAX_WORDS} words) to "
        "{researcher.contact_name} <{researcher.contact_email}> at {researcher.name}. Name the "
        "company, cite the selected case studies ({selector.case_study_ids}) by customer and "
        "result, and end with one clear question.",
        output_type=EmailDraft,
        checks=[names_the_company, cites_a_selected_case_study, within_length],
        budget=Budget(max_llm_calls=4),
    )
    sender = Agent(
        "sender", model,
        "Send the drafted email with send_email, exactly as drafted (to, subject, body from "
        "the drafter's output). Then reply with one line saying whether it was sent.",
        tools=[send_email], budget=Budget(max_llm_calls=4),
    )
    return Sequential("titanium", [researcher, planner, case_studies, selector, drafter, sender])
