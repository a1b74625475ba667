"""Titanium's offline model: a deterministic script per node, reading the knowledge base
through the same tools a real model would call."""

from __future__ import annotations

import re
from typing import Any

from tether.agents.offline import Reply, ScriptedModel, Turn, call, output

_OFF_TOPIC = re.compile(r"\b(poem|song|homework|recipe|weather|joke|essay)\b", re.I)


def scope_gate(turn: Turn) -> Reply:
    request = turn.state().get("input", {})
    text = " ".join(str(v) for v in request.values())
    if not request.get("company"):
        return output(in_scope=False, reason="no company to research was named")
    if _OFF_TOPIC.search(text):
        return output(in_scope=False, reason="the request is not B2B sales research")
    return output(in_scope=True, reason="a company to research for outbound email")


def researcher(turn: Turn) -> Reply:
    company = str(turn.state().get("input", {}).get("company", ""))
    records: list[dict[str, Any]] = [
        r for r in turn.results_of("get_company") if isinstance(r, dict) and "name" in r]
    if records:
        r = records[-1]
        return output(name=r["name"], industry=r["industry"], employees=r["employees"],
                      summary=r["summary"], challenges=r["challenges"],
                      contact_name=r["contact"]["name"], contact_email=r["contact"]["email"])
    hits = turn.results_of("search_companies")
    if not hits:
        return call("search_companies", query=company)
    if hits[-1]:
        return call("get_company", name=hits[-1][0]["name"])
    return output(name=company, industry="unknown", summary=f"No record of {company} was found.",
                  challenges=["no public information found"], contact_name="there",
                  contact_email=f"info@{re.sub(r'[^a-z0-9]', '', company.lower())}.example")


def planner(turn: Turn) -> Reply:
    profile = turn.state()["outputs"]["researcher"]
    queries = [*profile["challenges"][:2], profile["industry"]]
    return output(queries=queries)


def case_studies(turn: Turn) -> Reply:
    queries = turn.state()["outputs"]["planner"]["queries"]
    done = turn.results_of("search_case_studies")
    if len(done) < len(queries):
        return call("search_case_studies", query=queries[len(done)])
    seen: dict[str, dict[str, Any]] = {}
    for query, hits in zip(queries, done, strict=False):
        for hit in hits:
            seen.setdefault(hit["id"], {**hit, "why": f"matches {query!r}"})
    picks = list(seen.values())[:4]
    return output(candidates=[{k: p[k] for k in ("id", "title", "customer", "result", "why")}
                              for p in picks])


def selector(turn: Turn) -> Reply:
    outputs = turn.state()["outputs"]
    industry = outputs["researcher"]["industry"]
    candidates = outputs["case_studies"]["candidates"]
    from tether.examples.titanium import knowledge

    def fit(c: dict[str, Any]) -> tuple[int, int]:
        study = knowledge.get_case_study(c["id"]) or {}
        return (0 if study.get("industry") == industry else 1, candidates.index(c))

    chosen = sorted(candidates, key=fit)[:2]
    return output(case_study_ids=[c["id"] for c in chosen],
                  rationale=f"closest to {outputs['researcher']['name']}'s challenges in "
                            f"{industry}")


def drafter(turn: Turn) -> Reply:
    outputs = turn.state()["outputs"]
    profile = outputs["researcher"]
    chosen = [c for c in outputs["case_studies"]["candidates"]
              if c["id"] in outputs["selector"]["case_study_ids"]]
    first_name = profile["contact_name"].split()[0]
    proof = " ".join(f"{c['customer']} ({c['title'].lower()}): {c['result']}." for c in chosen)
    body = (
        f"Hi {first_name},\n\n"
        f"I have been reading about {profile['name']}. Teams like yours often tell us that "
        f"{profile['challenges'][0]}.\n\n"
        f"We have helped companies facing the same problem. {proof}\n\n"
        f"Would a 20-minute call next week to see whether this could work for "
        f"{profile['name']} be useful?\n\nBest,\nAlex from Northwind Data"
    )
    return output(to=profile["contact_email"],
                  subject=f"{profile['name']}: {chosen[0]['result'][0].lower()}"
                          f"{chosen[0]['result'][1:]}"[:90],
                  body=body)


def sender(turn: Turn) -> Reply:
    receipts = turn.results_of("send_email")
    if receipts:
        r = receipts[-1]
        return f"Email {r['status']} to {r['to']} ({r['message_id']})."
    if turn.errors:
        return f"Not sent: {turn.errors[-1]}"
    draft = turn.state()["outputs"]["drafter"]
    return call("send_email", to=draft["to"], subject=draft["subject"], body=draft["body"])


SCRIPT = {
    "researcher-scope": scope_gate,
    "researcher": researcher,
    "planner": planner,
    "case_studies": case_studies,
    "selector": selector,
    "drafter": drafter,
    "sender": sender,
}


SCRIPTED_MODEL_NAME = "titanium-scripted"


def scripted_model(*, latency: float = 0.0, call_log: str | None = None) -> ScriptedModel:
    """The offline stand-in for a real model (deterministic, no network)."""
    return ScriptedModel(SCRIPT, model_name=SCRIPTED_MODEL_NAME, latency=latency,
                         call_log=call_log)
