"""The trust policy over HTTP (admin role): widen or narrow a category's ring for an agent.

The policy in code never changes; like an automatic promotion, an admin's change is a recorded
ring change (`tether trust` lists it with its reason), honoured by the gate wherever the policy
lets evidence move that category (``Policy(promote=…)``).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from tether.server.auth import note, principal_of, role
from tether.server.rendering import tether_app_of
from tether.store.base import RingChangeRecord

router = APIRouter(prefix="/api/trust", tags=["trust"])


class ChangeRing(BaseModel):
    """Body of ``POST /api/trust/rings``."""

    model_config = ConfigDict(extra="forbid")

    agent: str = Field(min_length=1, max_length=200)
    category: str = Field(min_length=1, max_length=200)
    ring: Literal["auto", "review"]
    reason: str = Field(min_length=1, max_length=2000)


@router.get("/rings", **role("viewer"))
async def rings(request: Request) -> dict[str, Any]:
    """Every recorded ring change, oldest first."""
    changes = await tether_app_of(request).store.list_ring_changes()
    return {"changes": [_change_json(c) for c in changes]}


@router.post("/rings", status_code=201, **role("admin", "policy.change"))
async def change_ring(request: Request, body: ChangeRing) -> dict[str, Any]:
    """Record a ring change for an agent's category (``auto`` widens, ``review`` narrows)."""
    store = tether_app_of(request).store
    history = await store.list_ring_changes(agent=body.agent, category=body.category)
    before = history[-1].to_ring if history else ("auto" if body.ring == "review" else "review")
    note(request, target=f"{body.agent}/{body.category}", ring=body.ring, reason=body.reason)
    change = await store.add_ring_change(
        RingChangeRecord(
            agent=body.agent, category=body.category, from_ring=before, to_ring=body.ring,
            reason=f"{body.reason} (by {principal_of(request).name})",
            evidence=None, created_at=time.time(),
        )
    )
    return _change_json(change)


def _change_json(change: RingChangeRecord) -> dict[str, Any]:
    return {
        "id": change.id, "agent": change.agent, "category": change.category,
        "from_ring": change.from_ring, "to_ring": change.to_ring, "reason": change.reason,
        "created_at": change.created_at,
    }
