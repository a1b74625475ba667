"""Titanium's bundled knowledge base: sample companies and the seller's case studies, searched
with SQLite FTS5 (an in-memory index built on first use from the JSON files in ``data/``)."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from functools import cache
from importlib import resources
from typing import Any

_lock = threading.Lock()


def _load(name: str) -> list[dict[str, Any]]:
    text = resources.files("tether.examples.titanium").joinpath("data").joinpath(name).read_text("utf-8")
    return json.loads(text)


@cache
def companies() -> list[dict[str, Any]]:
    """Every sample company."""
    return _load("companies.json")


@cache
def case_studies() -> list[dict[str, Any]]:
    """Every case study of the seller."""
    return _load("case_studies.json")


@cache
def _index() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.execute("CREATE VIRTUAL TABLE company USING fts5(name, industry, summary, challenges, "
               "key UNINDEXED)")
    db.execute("CREATE VIRTUAL TABLE study USING fts5(title, customer, industry, challenge, "
               "solution, tags, key UNINDEXED)")
    for i, c in enumerate(companies()):
        db.execute("INSERT INTO company VALUES (?, ?, ?, ?, ?)",
                   (c["name"], c["industry"], c["summary"], " ".join(c["challenges"]), i))
    for i, s in enumerate(case_studies()):
        db.execute("INSERT INTO study VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (s["title"], s["customer"], s["industry"], s["challenge"], s["solution"],
                    s["tags"], i))
    return db


def _match(text: str) -> str:
    """Free text as an FTS5 query: any of its words (quoted, so no syntax leaks in)."""
    words = [w for w in re.findall(r"[A-Za-z0-9]+", text.lower()) if len(w) > 2]
    return " OR ".join(f'"{w}"' for w in words[:16])


def search_companies(query: str, limit: int = 3) -> list[dict[str, Any]]:
    """Companies best matching `query`, best first."""
    match = _match(query)
    if not match:
        return []
    with _lock:
        rows = _index().execute(
            "SELECT key FROM company WHERE company MATCH ? ORDER BY bm25(company) LIMIT ?",
            (match, limit)).fetchall()
    return [companies()[int(key)] for (key,) in rows]


def get_company(name: str) -> dict[str, Any] | None:
    """The company with this name (case-insensitive), if known."""
    wanted = name.strip().lower()
    return next((c for c in companies() if c["name"].lower() == wanted), None)


def search_case_studies(query: str, limit: int = 3) -> list[dict[str, Any]]:
    """Case studies best matching `query`, best first."""
    match = _match(query)
    if not match:
        return []
    with _lock:
        rows = _index().execute(
            "SELECT key FROM study WHERE study MATCH ? ORDER BY bm25(study) LIMIT ?",
            (match, limit)).fetchall()
    return [case_studies()[int(key)] for (key,) in rows]


def get_case_study(study_id: str) -> dict[str, Any] | None:
    return next((s for s in case_studies() if s["id"] == study_id), None)
