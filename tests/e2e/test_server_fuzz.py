"""A bounded fuzz of the HTTP API from its OpenAPI document, with a valid admin token, against a
real `tether serve` on loopback: every operation gets malformed and hostile path parameters,
query parameters and bodies. A client mistake must be a 4xx naming what was wrong — never a 5xx.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any
from urllib.parse import quote

import httpx
import pytest

import tether
from tests.e2e.served import serve
from tests.integration.trust_workflows import make_app
from tether.access.principals import create_principal

pytestmark = pytest.mark.timeout(300)

ROUNDS = 6
"""Variants per operation (each variant sends a handful of requests)."""

HOSTILE_TEXT = [
    "", " ", "x" * 5000, "nul\x00byte", "../../etc/passwd", "%00", "%ED%A0%80", "%FF",
    "'; DROP TABLE runs;--", "🙂", "tether.started_by", "-1", "1e309", "null", "true", "[]",
    "{}", "\u202e", "a/b",
]
"""For paths and queries (a URL cannot carry a lone surrogate; its percent-encoding can)."""
HOSTILE_VALUES: list[Any] = [
    "\ud800", "pair \ud83d\ude00 ok", None, True, 0, -1, 2**63, -(2**63) - 1, 10**30, 1.5, -0.0, 1e308, "", "x" * 10000,
    "nul\x00", [], [1, "a", None], {}, {"a": {"b": {"c": [{}]}}}, {"tether.started_by": "x"},
]


def hostile_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return rng.choice(HOSTILE_VALUES + HOSTILE_TEXT)
    if roll < 0.75:
        return [hostile_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = [*HOSTILE_TEXT, "workflow", "name", "from_step", "edits", "reason", "roles", "input",
            "labels", "run_id", "ring"]
    return {rng.choice(keys): hostile_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def mutate_body(rng: random.Random, schema_props: dict[str, Any]) -> Any:
    """A body shaped like the schema's, with each field replaced by something hostile."""
    body: dict[str, Any] = {}
    for name in schema_props:
        if rng.random() < 0.8:
            body[name] = hostile_json(rng)
    if rng.random() < 0.3:
        body[rng.choice(HOSTILE_TEXT) or "extra"] = hostile_json(rng)
    return body


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return spec["components"]["schemas"][ref.split("/")[-1]]
    for option in schema.get("anyOf", []):
        if "$ref" in option:
            return resolve(spec, option)
    return schema


def test_no_operation_answers_a_5xx_to_hostile_input(store_url: str) -> None:
    app = make_app(store_url, tether.Policy({"read": "auto", "send": "review"}), [])
    _, token = app.portal.run(create_principal(app.store, "ada", "admin"))
    app.portal.run(create_principal(app.store, "olga", "operator"))
    waiting = app.run("outreach", {"to": "ceo@acme.com", "body": "Hi"}, started_by="olga")
    approval = app.approvals()[0].id
    real_ids = {"run_id": waiting.id, "approval_id": approval, "name": "olga"}
    rng = random.Random(20261201)
    failures: list[str] = []
    sent = unauthorized = 0
    with serve(store_url) as served:
        client = served.client(token)
        spec = client.get("/api/openapi.json").json()
        for path, operations in sorted(spec["paths"].items()):
            if path.endswith("/events"):
                # An event stream stays open while its run lives; whether the fuzzed cancel
                # before it happened to end the run depends on the random draws.
                app.cancel(waiting.id, "fuzz: the event stream ends with the run")
            for method, operation in operations.items():
                params = [p for p in operation.get("parameters", []) if p["in"] in ("path", "query")]
                props: dict[str, Any] = {}
                content = operation.get("requestBody", {}).get("content", {})
                if "application/json" in content:
                    props = resolve(spec, content["application/json"]["schema"]).get("properties", {})
                for round_ in range(ROUNDS):
                    url = path
                    query: dict[str, str] = {}
                    for param in params:
                        if param["in"] == "path":
                            value = real_ids.get(param["name"]) if round_ == 0 else rng.choice(HOSTILE_TEXT) or "x"
                            url = url.replace("{" + param["name"] + "}", quote(str(value), safe="%"))
                        elif rng.random() < 0.7:
                            query[param["name"]] = rng.choice(HOSTILE_TEXT)
                    variants: list[tuple[bytes | None, str]] = [
                        (json.dumps(mutate_body(rng, props)).encode(), "application/json"),
                        (json.dumps(hostile_json(rng)).encode(), "application/json"),
                        (b'{"unterminated": ', "application/json"),
                        (b"\xff\xfe garbage", "application/json"),
                        (("[" * 3000).encode(), "application/json"),
                    ]
                    if method == "get":
                        variants = variants[:1]
                    for body, content_type in variants:
                        try:
                            response = client.request(
                                method.upper(), re.sub(r"//+", "/", url), params=query,
                                content=body if method != "get" else None,
                                headers={"Content-Type": content_type},
                            )
                        except httpx.TransportError as exc:  # the server dropped the request
                            failures.append(f"{method.upper()} {url} {query} -> {exc!r}")
                            client = served.client(token)
                            continue
                        sent += 1
                        unauthorized += response.status_code == 401
                        if response.status_code >= 500:
                            failures.append(
                                f"{method.upper()} {url} {query} {body[:200] if body else ''!r} "
                                f"-> {response.status_code} {response.text[:300]}"
                            )
    assert sent > 100 and unauthorized == 0  # every request reached its route's checks
    assert not failures, "\n".join(failures[:20])
