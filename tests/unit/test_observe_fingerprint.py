"""Model-call fingerprints: stable under formatting, changed by a real prompt or tool edit."""

from __future__ import annotations

from tether.observe import names as n
from tether.observe.fingerprint import fingerprint

SEARCH = {"name": "search_company", "parameters": {"type": "object", "properties": {"q": {}}}}
SEND = {"name": "send_email", "parameters": {"type": "object"}}


def test_fingerprint_records_models_prompt_tools_and_app_version() -> None:
    fp = fingerprint(instructions="Research the company.", tool_schemas=[SEARCH, SEND],
                     request_model="gpt-4.1-mini", response_model="gpt-4.1-mini-2025-04-14",
                     app_version="2.3.0")
    assert fp[n.REQUEST_MODEL] == "gpt-4.1-mini"
    assert fp[n.RESPONSE_MODEL] == "gpt-4.1-mini-2025-04-14"
    assert fp[n.APP_VERSION] == "2.3.0"
    assert len(fp[n.PROMPT_HASH]) == 12
    same = fingerprint(instructions="Research the company.", tool_schemas=[SEND, SEARCH],
                       request_model="gpt-4.1-mini")
    assert same[n.PROMPT_HASH] == fp[n.PROMPT_HASH]
    assert same[n.TOOLS_HASH] == fp[n.TOOLS_HASH]  # tool order does not matter
    edited = fingerprint(instructions="Research the company briefly.", tool_schemas=[SEARCH],
                         request_model="gpt-4.1-mini")
    assert edited[n.PROMPT_HASH] != fp[n.PROMPT_HASH]
    assert edited[n.TOOLS_HASH] != fp[n.TOOLS_HASH]
