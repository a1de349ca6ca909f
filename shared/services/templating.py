"""Templates from the blob store: a sandboxed, autoescaping Jinja2 environment with strict
undefined, compiled once per template version.

Email templates live at `email/<name>.html` (a `<title>` holds the subject) with an optional
`email/<name>.txt`; pages at `pages/<name>.html`. Emails are flattened once per version: layout
resolved, CSS inlined (css-inline), text part derived (inscriptis) when there is no .txt.
"""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import css_inline
import jinja2
from inscriptis import get_text
from inscriptis.model.config import ParserConfig
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shared.domain.errors import NotFound, PermanentFailure
from shared.ports import BlobStore
from shared.services.template_flattening import Protection, flatten

_TITLE = re.compile(r"<title>(.*?)</title>", re.DOTALL | re.IGNORECASE)
_TBODY = re.compile(r"</?tbody>")
_BLANK_RUNS = re.compile(r"\n{3,}")
_TABLE_TAGS = re.compile(r"<(/?)(?:table|thead|tbody|tfoot|tr|td|th)\b[^>]*>", re.IGNORECASE)
_MARKDOWN_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")
_TEXT_CONFIG = ParserConfig(display_links=True)
_INLINER = css_inline.CSSInliner(keep_style_tags=False, keep_link_tags=True)


def email_source_names(name: str) -> tuple[str, str]:
    return f"email/{name}.html", f"email/{name}.txt"


@dataclass(frozen=True)
class CompiledEmail:
    name: str
    version: str
    sources: tuple[str, ...]  # every blob it was made from
    subject: jinja2.Template
    html: jinja2.Template
    text: jinja2.Template
    html_source: str  # flattened, CSS inlined; links and pixel are added per message


class _BlobLoader(jinja2.BaseLoader):
    """Reads sources from the blob store; a cached template is re-checked at most every
    `check_interval_s` (a GCS metadata read) so a new upload is picked up without a redeploy."""

    def __init__(
        self,
        blobs: BlobStore,
        check_interval_s: float,
        transform: Callable[[str, str], str] = lambda name, source: source,
    ):
        self._blobs = blobs
        self._interval = check_interval_s
        self._transform = transform

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        try:
            version = self._blobs.version(template)
            source = self._blobs.read(template).decode("utf-8")
        except NotFound as exc:
            raise jinja2.TemplateNotFound(template) from exc
        checked = [time.monotonic()]

        def uptodate() -> bool:
            if time.monotonic() - checked[0] < self._interval:
                return True
            checked[0] = time.monotonic()
            try:
                return self._blobs.version(template) == version
            except NotFound:
                return False

        return self._transform(template, source), template, uptodate


class TemplateCatalog:
    def __init__(self, blobs: BlobStore, check_interval_s: float = 30.0) -> None:
        self._blobs = blobs
        self._interval = check_interval_s
        self._html_env = self._environment(_BlobLoader(blobs, check_interval_s), autoescape=True)
        self._plain_env = self._environment(jinja2.DictLoader({}), autoescape=False)
        self._emails: dict[str, CompiledEmail] = {}
        self._checked: dict[str, float] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _environment(loader: jinja2.BaseLoader, autoescape: bool) -> jinja2.Environment:
        return ImmutableSandboxedEnvironment(
            loader=loader,
            autoescape=autoescape,
            undefined=jinja2.StrictUndefined,
            auto_reload=True,
            keep_trailing_newline=True,
        )

    def page(self, name: str) -> jinja2.Template:
        return self._html_env.get_template(f"pages/{name}.html")

    def email(self, name: str) -> CompiledEmail:
        """The compiled email, rebuilt when any blob it is made of (layouts included) changed;
        versions are re-checked at most every `check_interval_s`. Raises NotFound for an unknown
        template and PermanentFailure for one that does not compile."""
        cached = self._emails.get(name)
        now = time.monotonic()
        if cached and now - self._checked.get(name, 0.0) < self._interval:
            return cached
        if cached and self._versions(cached.sources) == cached.version:
            self._checked[name] = now
            return cached
        with self._lock:
            compiled = self._compile(name)
            self._emails[name] = compiled
            self._checked[name] = now
            return compiled

    def _versions(self, names: tuple[str, ...]) -> str:
        versions = []
        for blob in names:
            try:
                versions.append(self._blobs.version(blob))
            except NotFound:
                versions.append("-")
        return "|".join(versions)

    def _compile(self, name: str) -> CompiledEmail:
        html_name, text_name = email_source_names(name)
        if not self._blobs.list(html_name):
            raise NotFound(f"no email template {name!r} (looked for {html_name})")
        loaded: list[str] = []
        try:
            flat_html = flatten(lambda p: self._render_layout(html_name, p, loaded), _inline_css)
            subject_source = _subject_source(flat_html, name)
            text_source = self._text_source(name, html_name, text_name)
            sources = tuple(dict.fromkeys([*loaded, text_name]))
            return CompiledEmail(
                name=name,
                version=self._versions(sources),
                sources=sources,
                subject=self._plain_env.from_string(subject_source),
                html=self._html_env.from_string(flat_html),
                text=self._plain_env.from_string(text_source),
                html_source=flat_html,
            )
        except jinja2.TemplateNotFound as exc:
            raise NotFound(f"email template {name!r} needs {exc.name!r}, which is missing") from exc
        except jinja2.TemplateError as exc:
            raise PermanentFailure(f"email template {name!r} does not compile: {exc}") from exc

    def _render_layout(
        self, template: str, protection: Protection, loaded: list[str], comments: bool = True
    ) -> str:
        def protect(name: str, source: str) -> str:
            loaded.append(name)
            return protection.protect(source, comments=comments)

        loader = _BlobLoader(self._blobs, 0, protect)
        return jinja2.Environment(loader=loader, autoescape=False).get_template(template).render()

    def _text_source(self, name: str, html_name: str, text_name: str) -> str:
        try:
            return self._blobs.read(text_name).decode("utf-8")
        except NotFound:
            return flatten(
                lambda p: self._render_layout(html_name, p, [], comments=False), _to_text
            )


def _inline_css(html: str) -> str:
    inlined = _INLINER.inline(html)
    return inlined if "<tbody" in html else _TBODY.sub("", inlined)


def _to_text(html: str) -> str:
    # Tables become plain blocks first: a text renderer lays table cells out by position,
    # which would tear Jinja loops (kept as placeholders) away from the rows they repeat.
    html = _TABLE_TAGS.sub(lambda m: f"<{m.group(1)}div>", _TITLE.sub("", html))
    text = get_text(html, _TEXT_CONFIG)
    text = _MARKDOWN_LINK.sub(r"\1 <\2>", text)  # plain-text convention: label <url>
    lines = [line.strip() for line in text.splitlines()]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip() + "\n"


def _subject_source(flat_html: str, name: str) -> str:
    match = _TITLE.search(flat_html)
    if not match or not match.group(1).strip():
        raise PermanentFailure(f"email template {name!r} has no <title> to use as the subject")
    # The title is HTML text: entities like &amp; mean their character in a header.
    return html.unescape(" ".join(match.group(1).split()))
