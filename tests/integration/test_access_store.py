"""Principals and the audit trail in the store, on every backend: names unique among active
principals, tokens found only by hash and only while active, audit entries filtered and kept by
the retention policy like runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

import tether
from tether.access.audit import list_audit, record
from tether.access.principals import (
    authenticate,
    create_principal,
    hash_token,
    revoke_principal,
)
from tether.errors import UserError
from tether.store.base import AuditRecord

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def app(store_url: str) -> Iterator[tether.App]:
    app = tether.App(store_url)
    yield app
    app.close()


def test_tokens_are_kept_hashed_and_stop_working_when_revoked(app: tether.App) -> None:
    run = app.portal.run
    assert run(app.store.has_principals()) is False
    record_, token = run(create_principal(app.store, "rita", "reviewer", categories="send,refund"))
    assert record_.token_hash == hash_token(token) and token not in repr(record_)
    found = run(authenticate(app.store, token))
    assert found is not None and found.name == "rita"
    assert found.may_review("send") and not found.may_review("deploy") and not found.has("operator")
    assert run(app.store.has_principals()) is True
    with pytest.raises(UserError, match="already exists"):
        run(create_principal(app.store, "rita", "admin"))
    run(revoke_principal(app.store, "rita"))
    assert run(authenticate(app.store, token)) is None
    assert run(app.store.has_principals()) is False
    with pytest.raises(UserError, match="already revoked"):
        run(revoke_principal(app.store, "rita"))
    # A revoked name can be issued again, with a new token; the old one stays dead.
    _, fresh = run(create_principal(app.store, "rita", "admin"))
    assert run(authenticate(app.store, token)) is None
    again = run(authenticate(app.store, fresh))
    assert again is not None and again.has("operator") and again.may_review("deploy")
    with pytest.raises(UserError, match="no reviewer role"):
        run(create_principal(app.store, "otto", "operator", categories="send"))
    with pytest.raises(UserError, match="unknown role"):
        run(create_principal(app.store, "otto", "superuser"))


def test_the_audit_trail_filters_and_is_pruned_with_old_runs(app: tether.App) -> None:
    run = app.portal.run
    old = time.time() - 40 * 86400
    run(app.store.add_audit(AuditRecord(old, "olga", "run.cancel", "r-old", "ok", via="cli")))
    run(record(app.store, "olga", "run.start", "r-1", detail={"workflow": "hello"}))
    run(record(app.store, "vic", "run.cancel", "r-1", outcome="denied"))
    run(record(app.store, "rita", "approval.approve", "a-1", via="dashboard"))
    entries = run(list_audit(app.store))
    assert [(e.principal, e.action) for e in entries] == [
        ("rita", "approval.approve"), ("vic", "run.cancel"), ("olga", "run.start"),
        ("olga", "run.cancel"),
    ]
    assert entries[2].detail == {"workflow": "hello"} and entries[2].via == "api"
    assert [e.principal for e in run(list_audit(app.store, action="run.*"))] == ["vic", "olga", "olga"]
    assert [e.action for e in run(list_audit(app.store, target="r-1"))] == ["run.cancel", "run.start"]
    assert [e.target for e in run(list_audit(app.store, principal="olga", since=old + 1))] == ["r-1"]
    app.prune(timedelta(days=30))
    assert [e.target for e in run(list_audit(app.store))] == ["a-1", "r-1", "r-1"]


def test_every_start_records_its_starter(app: tether.App) -> None:
    named = app.start("hello", {}, started_by="carol")
    assert app.get_run(named.id).started_by == "carol"
    anonymous = app.get_run(app.start("hello", {}, labels={"team": "sales"}).id)
    assert anonymous.started_by  # the OS login name, never nothing
    assert anonymous.labels == {"team": "sales"}  # tether's own label is not a user label
    fork = app.get_run(app.fork(named.id, 1, started_by="dora").id)
    assert fork.started_by == "dora"
