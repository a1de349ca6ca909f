"""JSON from outside, parsed strictly: what a request body may be before anything uses it.

Python's `json` accepts NaN and Infinity (JSON has neither) and recurses once per nesting level,
so a body nested a thousand deep raises RecursionError instead of a ValueError. Every body a
caller sends (HTTP forms of JSON, webhook payloads, posted events) goes through `loads`, which
turns all of that (and strings with lone surrogates) into InvalidInput naming the limit, so the
caller gets a 400 and nothing downstream ever sees a value it cannot store or serialize.
"""

from __future__ import annotations

import json
import re
from typing import Any

from shared.domain.errors import InvalidInput

MAX_JSON_DEPTH = 32  # levels of nested arrays/objects; real payloads use fewer than 8
# Only an escape can put a surrogate into a string (UTF-8 text cannot hold one).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class TooDeep(InvalidInput):
    """Valid JSON, maybe, but nested deeper than the limit: refused before anything reads it
    (a webhook answers 400 for it, not the 401 of a body it could not search for a signature)."""


def loads(data: bytes | str, what: str = "body", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value of `data`; InvalidInput when it is not JSON, holds NaN or Infinity, or
    nests arrays/objects deeper than `max_depth`."""
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise TooDeep(_too_deep(what, max_depth)) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from exc
    raw = data.encode(errors="surrogatepass") if isinstance(data, str) else data
    escaped_surrogates = _SURROGATE_ESCAPE.search(raw) is not None
    if isinstance(value, str) and escaped_surrogates:
        _require_text(value, what)
    elif isinstance(value, dict | list):
        _check(value, what, max_depth, escaped_surrogates)
    return value


def _check(value: Any, what: str, max_depth: int, escaped_surrogates: bool) -> None:
    """InvalidInput when `value` nests deeper than `max_depth` or (when the text had escapes
    that could make one) holds a string that is not Unicode text: a lone surrogate such as
    "\\ud800" cannot be encoded, stored or hashed. Walks without recursion."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, level = pending.pop()  # the top array/object is level 0
        if level >= max_depth:
            raise TooDeep(_too_deep(what, max_depth))
        children = item.values() if isinstance(item, dict) else item
        if escaped_surrogates:
            for text in _strings(item):
                _require_text(text, what)
        pending.extend((c, level + 1) for c in children if isinstance(c, dict | list))


def _strings(item: dict | list) -> list[str]:
    keys = list(item) if isinstance(item, dict) else []
    values = item.values() if isinstance(item, dict) else item
    return [*keys, *(v for v in values if isinstance(v, str))]


def _require_text(text: str, what: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"{what} holds a string that is not Unicode text ({exc.reason})"
        ) from exc


def _refuse_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def _too_deep(what: str, max_depth: int) -> str:
    return f"{what} is nested too deeply: at most {max_depth} levels of arrays/objects"
