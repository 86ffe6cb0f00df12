"""Reading a JSON object from text, and the words for text that is not one."""

from __future__ import annotations

import pytest

from webhook.templating.json_objects import NOT_AN_OBJECT, NOT_JSON, NotAnObject, load_object


@pytest.mark.parametrize("text", [b'{"a": [1, {"b": null}]}', '{"a": [1, {"b": null}]}'])
def test_an_object_is_read_from_bytes_or_str(text: bytes | str) -> None:
    assert load_object(text) == {"a": [1, {"b": None}]}


@pytest.mark.parametrize("text", [b"", b"{", "{'a': 1}", b"\xff"])
def test_text_that_is_not_json_says_so_and_why(text: bytes | str) -> None:
    with pytest.raises(NotAnObject) as caught:
        load_object(text)
    assert caught.value.reason == NOT_JSON
    assert str(caught.value).startswith("not JSON: ") and len(str(caught.value)) > len("not JSON: ")
    assert caught.value.__cause__ is not None  # the parser's error, kept for the log


@pytest.mark.parametrize("text", ["[]", "1", '"{}"', "null", "true"])
def test_json_of_another_type_is_not_an_object(text: str) -> None:
    with pytest.raises(NotAnObject) as caught:
        load_object(text)
    assert caught.value.reason == NOT_AN_OBJECT == str(caught.value) == "not a JSON object"


def test_it_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^not a JSON object$"):
        load_object("[1]")
