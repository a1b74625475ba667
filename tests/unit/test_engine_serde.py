"""Values into the journal: a serializer's output marked `JsonObject` is journaled as it is;
any other value is converted (a copy, so later changes to the caller's object cannot reach the
journal)."""

from __future__ import annotations

from tether.engine.serde import JsonObject, to_jsonable


def test_a_json_object_is_journaled_as_it_is_and_a_plain_dict_is_copied() -> None:
    made = JsonObject(
        {"parts": [{"content": "hi", "part_kind": "text"}], "usage": {"input_tokens": 3}}
    )
    assert to_jsonable(made, what="x") is made
    plain = {"parts": [{"content": "hi"}]}
    copied = to_jsonable(plain, what="x")
    assert copied == plain and copied is not plain
    plain["parts"][0]["content"] = "changed"
    assert copied["parts"][0]["content"] == "hi"
