"""Flatten an email template once per template version, so per-message work stays small.

Layouts (`{% extends %}`, `{% block %}`, `{% include %}`) are resolved by Jinja while every other
Jinja construct is protected as a placeholder; the flattened HTML then goes through CSS inlining
(and, for the text part, HTML-to-text) once, and the placeholders are put back. Statements
outside tags become HTML comments (an HTML parser keeps comments where they are, even between
table rows); expressions and statements inside tags become private-use characters that survive
in text and attribute values alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

_JINJA_TOKEN = re.compile(r"\{\{-?.*?-?\}\}|\{%-?.*?-?%\}|\{#.*?#\}", re.DOTALL)
# Layout statements resolved while flattening: blocks, and extends/include of a literal name
# only (any other argument stays protected and is evaluated per message, in the sandbox).
_LAYOUT_STATEMENT = re.compile(
    r"\{%-?\s*(?:(?:extends|include)\s+(?:\"[\w./-]+\"|'[\w./-]+')\s*"
    r"|block\s+\w+\s*|endblock(?:\s+\w+)?\s*)-?%\}"
)
_SUPER = re.compile(r"\{\{-?\s*super\(\)\s*-?\}\}")
_COMMENT_MARK = re.compile(r"<!--mp:(\d+)-->|&lt;!--mp:(\d+)--&gt;")
_TEXT_MARK = re.compile("\ue000(\\d+)\ue001")


@dataclass
class Protection:
    """The Jinja snippets taken out of a source, by placeholder number."""

    snippets: list[str] = field(default_factory=list)

    def protect(self, source: str, *, comments: bool = True) -> str:
        out: list[str] = []
        last = 0
        for match in _JINJA_TOKEN.finditer(source):
            token = match.group(0)
            out.append(source[last : match.start()])
            last = match.end()
            if _LAYOUT_STATEMENT.match(token) or _SUPER.match(token):
                out.append(token)
            elif token.startswith("{#"):
                continue
            else:
                in_tag = _inside_tag(source, match.start())
                out.append(
                    self._mark(token, as_comment=comments and token[1] == "%" and not in_tag)
                )
        out.append(source[last:])
        return "".join(out)

    def _mark(self, token: str, as_comment: bool) -> str:
        self.snippets.append(token)
        n = len(self.snippets) - 1
        return f"<!--mp:{n}-->" if as_comment else f"\ue000{n}\ue001"

    def restore(self, text: str) -> str:
        def put_back(match: re.Match[str]) -> str:
            return self.snippets[int(match.group(1) or match.group(2))]

        return _TEXT_MARK.sub(put_back, _COMMENT_MARK.sub(put_back, text))


def _inside_tag(source: str, position: int) -> bool:
    """True when `position` is between a tag's `<` and its `>` (an attribute context)."""
    opened = source.rfind("<", 0, position)
    return opened > source.rfind(">", 0, position) and not source.startswith("<!--", opened)


def flatten(
    render_layout: Callable[[Protection], str], transform: Callable[[str], str] = lambda s: s
) -> str:
    """Render the layout with a fresh Protection, transform the result, restore the snippets.

    `render_layout(protection)` must render the template with a loader that passes every
    source through `protection.protect` and an empty context.
    """
    protection = Protection()
    return protection.restore(transform(render_layout(protection)))
