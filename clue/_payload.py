"""Render request and response payloads for debug logs: JSON, sensitive keys masked.

Masking reuses clue.log's sanitizer and keys; the log pipeline truncates the
resulting text to its maximum value size.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from google.protobuf import json_format
from google.protobuf.message import Message

from clue.log import STATE, clean_value

_TEXT_TYPES = ("application/json", "text/", "application/x-www-form-urlencoded", "+json")


def message_payload(message: Any) -> str:
    """A protobuf message (or anything else) as masked JSON text."""
    if isinstance(message, Message):
        data: Any = json_format.MessageToDict(message, preserving_proto_field_name=True)
        return _masked_json(data)
    return repr(message)


def body_payload(body: bytes, content_type: str) -> str | None:
    """An HTTP body as text when its content type is textual (JSON masked), else None."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if not kind or not any(t in kind for t in _TEXT_TYPES):
        return None
    text = body.decode("utf-8", "replace")
    if kind.endswith("json"):
        try:
            return _masked_json(json.loads(text))
        except ValueError:
            return text
    if kind == "application/x-www-form-urlencoded":
        return _masked_json(dict(parse_qsl(text, keep_blank_values=True)))
    return text


def _masked_json(data: Any) -> str:
    limit = STATE.max_value_size
    masked = clean_value(data, STATE.sensitive_keys, limit)
    return json.dumps(masked, separators=(",", ":"), ensure_ascii=False)
