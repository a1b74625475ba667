"""Who may do what, tried from outside: a real `tether serve` process over real HTTP, on both
stores. Every mutating endpoint without a token, with a viewer's, with a reviewer of another
category's, as the run's starter, and with the right role; forged X-Forwarded-* headers from an
untrusted peer; a trusted SSO proxy; the refusal to serve beyond loopback without principals;
the audit trail after a series of actions; the tokens CLI.

Principals are created through the access layer (the CLI's own tests are below); runs are put in
the state under test in this process with `app.run`, which the server then reads from the store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import tether
from tests.e2e.served import Served, serve, tether_cli
from tests.integration.trust_workflows import make_app
from tether.access.principals import create_principal, login_name

pytestmark = pytest.mark.timeout(180)

INPUT = {"to": "ceo@acme.com", "body": "Hi, we cut freight costs 12% for Globex."}
ROLES = {
    "ada": "admin",
    "vic": "viewer",
    "olga": "operator,reviewer",   # starts the run under review, and reviews too
    "rita": ("reviewer", "send"),   # may decide send requests
    "rolf": ("reviewer", "refund"),  # a reviewer of another category
}


@dataclass
class World:
    """A store with principals, a run waiting for a human (started by olga), and a server."""

    app: tether.App
    served: Served
    tokens: dict[str, str]
    run_id: str
    approval_id: str
    url: str

    def as_(self, name: str | None) -> httpx.Client:
        return self.served.client(None if name is None else self.tokens[name])


def principals(app: tether.App) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for name, spec in ROLES.items():
        roles, categories = (spec, None) if isinstance(spec, str) else spec
        _, tokens[name] = app.portal.run(
            create_principal(app.store, name, roles, categories=categories)
        )
    return tokens


def under_review(app: tether.App) -> tuple[str, str]:
    info = app.run("outreach", INPUT, started_by="olga")
    assert info.status == "waiting"
    (approval,) = [a for a in app.approvals() if a.run_id == info.id]
    return info.id, approval.id


@pytest.fixture
def world(store_url: str) -> Iterator[World]:
    app = make_app(store_url, tether.Policy({"read": "auto", "send": "review"}), [])
    tokens = principals(app)
    run_id, approval_id = under_review(app)
    with serve(store_url) as served:
        yield World(app, served, tokens, run_id, approval_id, store_url)


def mutations(w: World) -> list[tuple[str, dict[str, Any], str]]:
    """Every mutating endpoint: path, a valid body, the role it needs."""
    run, approval = w.run_id, w.approval_id
    return [
        ("/api/runs", {"workflow": "outreach", "input": INPUT}, "operator"),
        (f"/api/runs/{run}/signal", {"name": "nudge"}, "operator"),
        (f"/api/runs/{run}/cancel", {"reason": "test"}, "operator"),
        (f"/api/runs/{run}/fork", {"from_step": 1}, "operator"),
        (f"/api/runs/{run}/budget", {"max_llm_calls": 10}, "operator"),
        (f"/api/approvals/{approval}/approve", {}, "reviewer"),
        (f"/api/approvals/{approval}/reject", {"reason": "no"}, "reviewer"),
        ("/api/tokens", {"name": "eve", "roles": ["admin"]}, "admin"),
        ("/api/tokens/rita/revoke", {}, "admin"),
        ("/api/trust/rings", {"agent": "drafter", "category": "send", "ring": "auto",
                              "reason": "trusted"}, "admin"),
    ]


def unchanged(w: World) -> None:
    assert w.app.get_run(w.run_id).status == "waiting"
    assert w.app.get_approval(w.approval_id).status == "pending"
    assert len(w.app.list_runs()) == 1
    assert {p.name for p in w.app.portal.run(w.app.store.list_principals())} == set(ROLES)
    assert w.app.portal.run(w.app.store.list_ring_changes()) == []


def test_every_mutation_needs_a_token_and_the_role_it_declares(world: World) -> None:
    w = world
    for path, body, needed in mutations(w):
        anonymous = w.as_(None).post(path, json=body)
        assert anonymous.status_code == 401, (path, anonymous.text)
        assert anonymous.json()["error"]["type"] == "Unauthorized"
        forged = w.served.client("tether_not-a-real-token").post(path, json=body)
        assert forged.status_code == 401, path
        viewer = w.as_("vic").post(path, json=body)
        assert viewer.status_code == 403, (path, viewer.text)
        error = viewer.json()["error"]
        assert error["role"] == needed and f"needs the {needed} role" in error["message"]
    # A reviewer may not operate runs, nor an operator manage tokens.
    assert w.as_("rita").post(f"/api/runs/{w.run_id}/cancel", json={}).json()["error"]["role"] == "operator"
    assert w.as_("olga").post("/api/tokens", json={"name": "x", "roles": ["admin"]}).status_code == 403
    unchanged(w)
    # Reading needs a token too, and any role reads.
    assert w.as_(None).get("/api/runs").status_code == 401
    assert w.as_(None).get("/api/openapi.json").status_code == 401
    assert w.as_("vic").get(f"/api/runs/{w.run_id}").json()["started_by"] == "olga"
    assert w.as_(None).get("/api/health").status_code == 200


def test_only_an_allowed_reviewer_who_did_not_start_the_run_decides(world: World) -> None:
    w = world
    approve = f"/api/approvals/{w.approval_id}/approve"
    other = w.as_("rolf").post(approve, json={})
    assert other.status_code == 403
    assert "refund only, not 'send'" in other.json()["error"]["message"]
    starter = w.as_("olga").post(approve, json={})
    assert starter.status_code == 403
    assert "olga started run" in starter.json()["error"]["message"]
    named = w.as_("rita").post(approve, json={"reviewer": "someone-else"})
    assert named.status_code == 422  # the reviewer is never a field of the body
    unchanged(w)
    decided = w.as_("rita").post(approve, json={"edits": {"subject": "Freight at Acme"}})
    assert decided.status_code == 200, decided.text
    assert decided.json()["decided_by"] == "rita" and decided.json()["edited"] is True
    assert w.app.get_approval(w.approval_id).decided_by == "rita"


def test_operators_operate_and_runs_record_the_principal_who_started_them(world: World) -> None:
    w = world
    started = w.as_("olga").post("/api/runs", json={"workflow": "outreach", "input": INPUT})
    assert started.status_code == 201, started.text
    assert started.json()["started_by"] == "olga" and started.json()["labels"] == {}
    spoof = w.as_("olga").post(
        "/api/runs", json={"workflow": "outreach", "labels": {"tether.started_by": "rita"}}
    )
    assert spoof.status_code == 422
    fork = w.as_("ada").post(f"/api/runs/{w.run_id}/fork", json={"from_step": 1})
    assert fork.status_code == 201 and fork.json()["started_by"] == "ada"
    assert w.as_("olga").post(f"/api/runs/{w.run_id}/signal", json={"name": "x"}).status_code == 202
    assert w.as_("olga").post(f"/api/runs/{w.run_id}/cancel", json={}).json()["status"] == "cancelled"


def test_the_audit_trail_records_who_did_what_to_which_target(world: World) -> None:
    w = world
    run2 = w.as_("olga").post("/api/runs", json={"workflow": "outreach", "input": INPUT}).json()["id"]
    w.as_("vic").post(f"/api/runs/{run2}/cancel", json={})                       # denied
    w.as_("rita").post(f"/api/approvals/{w.approval_id}/approve",
                       json={"edits": {"subject": "Freight at Acme"}})            # edit
    w.as_("olga").post(f"/api/runs/{run2}/signal", json={"name": "nudge"})
    w.as_("olga").post(f"/api/runs/{run2}/cancel", json={"reason": "duplicate"})
    w.as_("olga").post(f"/api/runs/{run2}/signal", json={"name": "late"})         # failed: ended
    w.as_("ada").post("/api/tokens/vic/revoke", json={})
    expected = [
        ("olga", "run.start", run2, "ok"),
        ("vic", "run.cancel", run2, "denied"),
        ("rita", "approval.edit", w.approval_id, "ok"),
        ("olga", "run.signal", run2, "ok"),
        ("olga", "run.cancel", run2, "ok"),
        ("olga", "run.signal", run2, "failed"),
        ("ada", "token.revoke", "vic", "ok"),
    ]
    api = w.as_("ada").get("/api/audit", params={"limit": 50}).json()["entries"]
    assert [(e["principal"], e["action"], e["target"], e["outcome"]) for e in reversed(api)] == expected
    assert all(e["via"] == "api" and e["at"] for e in api)
    assert api[-2]["detail"]["status"] == 403 and "operator" in api[-2]["detail"]["error"]
    cli = json.loads(tether_cli("audit", "--json", "--store", w.url).stdout)
    assert [(e["principal"], e["action"], e["target"], e["outcome"]) for e in reversed(cli)] == expected
    only = json.loads(tether_cli("audit", "--json", "--action", "run.*", "--principal", "olga",
                                 "--store", w.url).stdout)
    assert [e["action"] for e in reversed(only)] == ["run.start", "run.signal", "run.cancel", "run.signal"]
    # The revoked viewer's token stops working at once.
    assert w.as_("vic").get("/api/runs").status_code == 401


def test_a_refused_request_cannot_write_pages_into_the_audit_trail(world: World) -> None:
    # Any principal may be refused; what it chose (a path of thousands of characters, escape
    # sequences) is kept short in the entry, so a viewer cannot flood everyone's trail.
    w = world
    w.as_("vic").post("/api/%1b%5b2J" + "x" * 30_000, json={})
    entries = w.as_("ada").get("/api/audit", params={"limit": 5}).json()["entries"]
    mine = [e for e in entries if e["principal"] == "vic"]
    assert mine, entries
    assert all(len(e["action"]) <= 400 and len(e["target"] or "") <= 400 for e in mine)
    assert mine[0]["action"].endswith("chars)"), mine[0]["action"][-40:]


def test_forged_forwarded_headers_from_an_untrusted_peer_are_ignored(store_url: str) -> None:
    app = make_app(store_url, tether.Policy({"send": "review"}), [])
    tokens = principals(app)
    run_id, _ = under_review(app)
    # The proxy is 10.9.9.9; this test connects from 127.0.0.1, so its headers count for nothing.
    with serve(store_url, "--auth-header", "X-Forwarded-User", "--trusted-proxy", "10.9.9.9",
               "--allowed-host", "evil.example") as served:
        as_admin = served.client(headers={"X-Forwarded-User": "ada"})
        assert as_admin.get("/api/me").status_code == 401
        assert as_admin.post(f"/api/runs/{run_id}/cancel", json={}).status_code == 401
        # A cross-site request with a forged X-Forwarded-Host matching its Origin: refused.
        operator = served.client(tokens["olga"])
        forged = operator.post(
            f"/api/runs/{run_id}/cancel", json={},
            headers={"Origin": "https://evil.example", "X-Forwarded-Host": "evil.example"},
        )
        assert forged.status_code == 403, forged.text
        assert forged.json()["error"]["type"] == "CrossOriginRefused"
    assert app.get_run(run_id).status == "waiting"


def test_a_trusted_sso_proxys_identity_header_is_honoured(store_url: str) -> None:
    app = make_app(store_url, tether.Policy({"send": "review"}), [])
    principals(app)
    run_id, approval_id = under_review(app)
    with serve(store_url, "--auth-header", "X-Forwarded-User", "--auth-header",
               "X-Forwarded-Email", "--trusted-proxy", "127.0.0.1") as served:
        rita = served.client(headers={"X-Forwarded-Email": "rita"})
        assert rita.get("/api/me").json() == {
            "name": "rita", "roles": ["reviewer", "viewer"], "categories": ["send"], "via": "sso"
        }
        stranger = served.client(headers={"X-Forwarded-User": "mallory@example.com"})
        refused = stranger.get("/api/runs")
        assert refused.status_code == 403 and "no tether principal" in refused.json()["error"]["message"]
        # The browser sends the SSO header by itself: a change needs the page's CSRF token.
        approve = f"/api/approvals/{approval_id}/approve"
        no_csrf = rita.post(approve, json={})
        assert no_csrf.status_code == 403 and no_csrf.json()["error"]["type"] == "CSRFTokenMissing"
        page = rita.get(f"/approvals/{approval_id}").text
        csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
        decided = rita.post(approve, json={}, headers={"X-CSRF-Token": csrf})
        assert decided.status_code == 200, decided.text
        assert decided.json()["decided_by"] == "rita"
        # Behind the trusted proxy, its X-Forwarded-Host is this server's public name.
        ada = served.client(headers={"X-Forwarded-User": "ada"})
        ada_csrf = ada.get("/runs").text.split('name="csrf-token" content="')[1].split('"')[0]
        proxied = ada.post(
            f"/api/runs/{run_id}/signal", json={"name": "x"},
            headers={"X-CSRF-Token": ada_csrf, "Origin": "https://tether.corp.example",
                     "X-Forwarded-Host": "tether.corp.example"},
        )
        assert proxied.status_code == 202, proxied.text


def test_beyond_loopback_without_principals_serve_refuses_to_start(store_url: str) -> None:
    result = tether_cli("serve", "--host", "0.0.0.0", "--store", store_url, "--create",
                        check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "without authentication" in lines[0]
    assert "tether tokens create" in lines[0]
    if store_url.startswith("sqlite:"):  # refused before the store it would have created
        assert not Path(store_url.removeprefix("sqlite:///")).exists()


def test_local_mode_on_loopback_acts_as_the_os_user_until_a_principal_exists(
    store_url: str,
) -> None:
    app = tether.App(store_url)
    app.list_runs()  # the store exists, with no principals
    with serve(store_url) as served:
        me = served.client().get("/api/me").json()
        assert me == {"name": login_name(), "roles": ["admin", "reviewer", "operator", "viewer"],
                      "categories": None, "via": "local"}
        assert "Local mode" in served.client().get("/runs").text
        tether_cli("tokens", "create", "ada", "--role", "admin", "--store", store_url)
        assert served.client().get("/api/me").status_code == 401
    app.close()


def test_tokens_cli_prints_the_secret_once_and_revoke_locks_it_out(store_url: str) -> None:
    created = tether_cli("tokens", "create", "rita", "--role", "reviewer", "--categories",
                         "send,refund", "--store", store_url)
    token = created.stdout.strip()
    assert token.startswith("tether_") and "\n" not in token
    as_json = json.loads(tether_cli("tokens", "create", "ada", "--role", "admin", "--json",
                                    "--store", store_url).stdout)
    listed = tether_cli("tokens", "list", "--json", "--store", store_url).stdout
    assert token not in listed and as_json["token"] not in listed and "sha256" not in listed
    assert [(p["name"], p["roles"], p["categories"]) for p in json.loads(listed)] == [
        ("ada", ["admin"], None), ("rita", ["reviewer"], ["refund", "send"])
    ]
    again = tether_cli("tokens", "create", "rita", "--role", "admin", "--store", store_url,
                       check=False)
    assert again.returncode == 2 and "already exists" in again.stderr
    app = tether.App(store_url)
    stored = app.portal.run(app.store.get_principal("rita"))
    assert stored is not None and token not in repr(stored)  # only the hash is kept
    with serve(store_url) as served:
        assert served.client(token).get("/api/me").json()["name"] == "rita"
        tether_cli("tokens", "revoke", "rita", "--store", store_url)
        assert served.client(token).get("/api/me").status_code == 401
        assert served.client(as_json["token"]).get("/api/me").status_code == 200
    app.close()
