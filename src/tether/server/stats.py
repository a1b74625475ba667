"""Stats and cost pages from the observe layer (mounted only when that layer is present)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

router = APIRouter(tags=["stats"])


def available(app: Any) -> bool:
    """Whether the observe layer's stats and cost reports can be imported."""
    del app  # the reports read the App's store; any App has one
    # Not wired yet: the observe layer's report API is still moving on its branch.
    return False
