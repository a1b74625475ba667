"""Formatting used by every CLI table: durations, times, labels."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tether.cli.common import redact_url
from tether.cli.render import format_created, format_duration, format_relative
from tether.cli.runs import parse_labels
from tether.errors import UserError


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.0123, "12 ms"),
        (2.44, "2.4 s"),
        (185, "3m 05s"),
        (2 * 3600 + 7 * 60, "2h 07m"),
        (3 * 86400 + 4 * 3600, "3d 04h"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_relative_times_say_past_or_future() -> None:
    moment = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    now = moment.timestamp()
    assert format_relative(moment, now=now - 4) == "in 4.0 s"
    assert format_relative(moment, now=now + 125) == "2m 05s ago"


def test_created_is_short_for_recent_runs() -> None:
    moment = datetime(2026, 3, 5, 7, 3, 54, tzinfo=UTC)
    assert format_created(moment, now=moment.timestamp() + 60) == "07:03:54"
    assert format_created(moment, now=moment.timestamp() + 5 * 86400) == "03-05 07:03"
    assert format_created(moment, now=moment.timestamp() + 400 * 86400) == "2026-03-05"


def test_labels_parse_key_value_pairs() -> None:
    assert parse_labels(["team=sales", "tenant = acme", "note=a=b"]) == {
        "team": "sales",
        "tenant": "acme",
        "note": "a=b",
    }
    assert parse_labels(None) == {}
    for bad in ("team", "=sales"):
        with pytest.raises(UserError, match="expected key=value"):
            parse_labels([bad])


def test_store_urls_are_logged_without_passwords() -> None:
    assert redact_url("postgresql://app:s3cret@db:5432/tether") == "postgresql://app:***@db:5432/tether"
    assert redact_url("sqlite:///tether.db") == "sqlite:///tether.db"
