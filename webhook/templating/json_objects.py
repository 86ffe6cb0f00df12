"""A JSON object read from text, or why the text is not one.

Webhook bodies and modelpin's JSON annotations are all objects; each caller words
the failure for its own reader (a body, an annotation) from ``NotAnObject.reason``.
"""

from __future__ import annotations

from typing import Any

import orjson

NOT_JSON = "not JSON"
NOT_AN_OBJECT = "not a JSON object"


class NotAnObject(ValueError):
    """Text that is not JSON (``reason`` NOT_JSON, the parser's words after it) or not an object."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason if detail is None else f"{reason}: {detail}")
        self.reason = reason


def load_object(text: bytes | str) -> dict[str, Any]:
    """The object ``text`` holds; ``NotAnObject`` if it is not JSON, or JSON of another type."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise NotAnObject(NOT_JSON, str(exc)) from exc
    if not isinstance(value, dict):
        raise NotAnObject(NOT_AN_OBJECT)
    return value
