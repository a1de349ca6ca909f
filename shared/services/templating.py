"""Templates from the blob store: a sandboxed, autoescaping Jinja2 environment with strict
undefined, compiled once per template version.

Email templates live at `email/<name>.html` (a `<title>` holds the subject) with an optional
`email/<name>.txt`; pages at `pages/<name>.html`. Emails are flattened once per version: layout
resolved, CSS inlined (css-inline), text part derived (inscriptis) when there is no .txt.
"""

from __future__ import annotations

import functools
import html
import re
import threading
import time
import types
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import css_inline
import jinja2
import markupsafe
from inscriptis import get_text
from inscriptis.model.config import ParserConfig
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shared.domain.errors import NotFound, PermanentFailure
from shared.ports import BlobStore
from shared.services.mime import FragmentEncoder
from shared.services.template_flattening import Protection, flatten

_TITLE = re.compile(r"<title>(.*?)</title>", re.DOTALL | re.IGNORECASE)
_TBODY = re.compile(r"</?tbody>")
_BLANK_RUNS = re.compile(r"\n{3,}")
_TABLE_TAGS = re.compile(r"<(/?)(?:table|thead|tbody|tfoot|tr|td|th)\b[^>]*>", re.IGNORECASE)
_MARKDOWN_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")
_TEXT_CONFIG = ParserConfig(display_links=True)
# `<style>` blocks are inlined and removed, but what cannot be inlined (`@media`, `@font-face`,
# `@supports` ...) stays in a `<style>` of its own: a responsive template needs its media
# queries. Nothing is ever fetched: templates with stylesheet links are refused before this.
_INLINER = css_inline.CSSInliner(
    keep_style_tags=False, keep_at_rules=True, keep_link_tags=False, load_remote_stylesheets=False
)
_STYLESHEET_LINK = re.compile(r"<link\b[^>]*\brel\s*=\s*[\"']?stylesheet\b[^>]*>", re.IGNORECASE)


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
    html_source: str  # flattened, CSS inlined, before link and pixel instrumentation
    variables: frozenset[str] = frozenset()  # every free name of the subject, HTML and text
    links: tuple[str, ...] = ()  # the literal http(s) links, in `mailpipe_links[i]` order
    escaped_links: tuple[markupsafe.Markup, ...] = ()  # the same, untracked, HTML-escaped
    # Quoted-printable encoders that know each template's literal text (mime.FragmentEncoder).
    html_encoder: FragmentEncoder = field(default_factory=FragmentEncoder, compare=False)
    text_encoder: FragmentEncoder = field(default_factory=FragmentEncoder, compare=False)


class TestableUndefined(jinja2.StrictUndefined):
    """Strict undefined that may be tested: `{% if city %}` and `{% if city == "Paris" %}` are
    false for a subscriber without a city, while printing, iterating or using a missing name
    is still an error (`{{ city | default("") }}` prints nothing). A subscriber attribute is
    missing for some subscribers by nature; a misspelt name is listed by the preview."""

    __slots__ = ()

    def __bool__(self) -> bool:  # type: ignore[override]  # StrictUndefined raises here
        return False

    def __eq__(self, other: object) -> bool:  # type: ignore[override]
        return type(self) is type(other)

    def __ne__(self, other: object) -> bool:  # type: ignore[override]
        return type(self) is not type(other)

    def __hash__(self) -> int:  # type: ignore[override]
        return id(type(self))


class MailSandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with `item.url` on a plain dict (subscriber data, items of an event) read as
    the key first: a dict's values are data, already reachable as `item["url"]`, and the
    sandbox's attribute-first lookup raises and catches an AttributeError for each of them.
    A key named like a dict method (`cart.items`) is therefore the data, not the method."""

    def getattr(self, obj: object, attribute: str) -> object:
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A template's globals as one dict, not Jinja's ChainMap over the environment's: every
        render copies them into its context, and copying a dict is one C call. (The catalog
        sets the environment's globals before it loads any template.)"""
        return {**self.globals, **(d or {})}


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
        self._html_env.filters[TRACK_FILTER] = _track_link
        # Rendered without a recipient (previews): links untracked, no pixel.
        self._html_env.globals.update({TRACKER_VARIABLE: None, PIXEL_VARIABLE: ""})
        self._plain_env = self._environment(jinja2.DictLoader({}), autoescape=False)
        self._emails: dict[str, CompiledEmail] = {}
        self._checked: dict[str, float] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _environment(loader: jinja2.BaseLoader, autoescape: bool) -> jinja2.Environment:
        return MailSandbox(
            loader=loader,
            autoescape=autoescape,
            undefined=TestableUndefined,
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
            instrumented, links = _instrument(flat_html)
            escaped_links = tuple(markupsafe.escape(u) for u in links)
            html_template = self._html_env.from_string(
                instrumented, globals={LINKS_VARIABLE: escaped_links}
            )
            text_template = self._plain_env.from_string(text_source)
            return CompiledEmail(
                name=name,
                version=self._versions(sources),
                sources=sources,
                subject=self._plain_env.from_string(subject_source),
                html=html_template,
                text=text_template,
                html_source=flat_html,
                variables=self._free_names(subject_source, flat_html, text_source),
                links=links,
                escaped_links=escaped_links,
                html_encoder=FragmentEncoder(literal_fragments(html_template)),
                text_encoder=FragmentEncoder(literal_fragments(text_template)),
            )
        except jinja2.TemplateNotFound as exc:
            raise NotFound(f"email template {name!r} needs {exc.name!r}, which is missing") from exc
        except jinja2.TemplateError as exc:
            raise PermanentFailure(f"email template {name!r} does not compile: {exc}") from exc

    def _free_names(self, *sources: str) -> frozenset[str]:
        names: set[str] = set()
        for source in sources:
            names |= meta.find_undeclared_variables(self._plain_env.parse(source))
        return frozenset(n for n in names if not n.startswith("mailpipe_"))

    def _render_layout(
        self, template: str, protection: Protection, loaded: list[str], comments: bool = True
    ) -> str:
        def protect(name: str, source: str) -> str:
            loaded.append(name)
            refuse_stylesheet_links(name, source)
            return protection.protect(source, comments=comments)

        loader = _BlobLoader(self._blobs, 0, protect)
        # Sandboxed too: only layout statements run here, but their arguments are expressions.
        layouts = ImmutableSandboxedEnvironment(loader=loader, autoescape=False)
        return layouts.get_template(template).render()

    def _text_source(self, name: str, html_name: str, text_name: str) -> str:
        try:
            return self._blobs.read(text_name).decode("utf-8")
        except NotFound:
            return flatten(
                lambda p: self._render_layout(html_name, p, [], comments=False), _to_text
            )


class StylesheetLinked(PermanentFailure):
    """An email template links a stylesheet. Rendering never fetches one (it would make a
    request to wherever a template points, per template version), so the template is refused
    with the file and line of the link."""

    def __init__(self, file: str, line: int, href: str) -> None:
        self.reason = (
            f"links the stylesheet {href or '(no href)'}: email templates cannot load "
            "stylesheets; put the CSS in a <style> block"
        )
        super().__init__(f"{file} line {line} {self.reason}")
        self.file = file
        self.line = line


_HREF = re.compile(r"""\bhref\s*=\s*["']?([^"'\s>]*)""", re.IGNORECASE)


def refuse_stylesheet_links(file: str, source: str) -> None:
    """Raises StylesheetLinked for the first `<link rel="stylesheet">` in `source`."""
    found = _STYLESHEET_LINK.search(source)
    if found:
        href = _HREF.search(found.group(0))
        line = source.count("\n", 0, found.start()) + 1
        raise StylesheetLinked(file, line, href.group(1) if href else "")


@functools.cache
def _subject_environment() -> jinja2.Environment:
    return MailSandbox(autoescape=False, undefined=TestableUndefined)


@functools.lru_cache(maxsize=256)
def subject_template(source: str) -> jinja2.Template:
    """A campaign's subject line as a template (compiled once per distinct subject): it may
    use every name the body sees except `subject` itself. Plain text, no autoescape: it is a
    header, which the MIME builder encodes."""
    return _subject_environment().from_string(source)


def literal_fragments(template: jinja2.Template) -> frozenset[int]:
    """Ids of the string constants in the template's compiled code: the literal text it yields,
    identical objects in every render (see mime.FragmentEncoder). Missing some is harmless."""
    ids: set[int] = set()
    pending = [template.root_render_func.__code__]
    pending += [block.__code__ for block in template.blocks.values()]
    while pending:
        code = pending.pop()
        for const in code.co_consts:
            if isinstance(const, str):
                ids.add(id(const))
            elif isinstance(const, types.CodeType):
                pending.append(const)
    return frozenset(ids)


TRACK_FILTER = "mailpipe_track"
TRACKER_VARIABLE = "mailpipe_tracker"  # url -> tracked url, or None to leave links alone
# The template's literal links, per message: tracked (or not) and escaped. A list lookup, not a
# function call: every call in the sandboxed environment pays for its safety checks.
LINKS_VARIABLE = "mailpipe_links"
PIXEL_VARIABLE = "mailpipe_pixel"  # the open pixel's <img>, or ""
_ANCHOR_HREF = re.compile(r'(<a\b[^>]*?\bhref=")([^"]*)(")', re.IGNORECASE | re.DOTALL)
_BODY_END = re.compile(r"</body>", re.IGNORECASE)


def _instrument(source: str) -> tuple[str, tuple[str, ...]]:
    """Route every link through tracking and put the pixel before </body>, in the template
    source, so tracking happens inside the render with no pass over each message's output.
    Literal http(s) links become `mailpipe_links[i]` (their URLs are returned alongside);
    links built from variables go through the `mailpipe_track` filter."""
    links: list[str] = []

    def route(match: re.Match[str]) -> str:
        target = match.group(2)
        if "{{" in target or "{%" in target:
            wrapped = f"{{% filter {TRACK_FILTER} %}}{target}{{% endfilter %}}"
        elif target.startswith(("http://", "https://")):
            links.append(html.unescape(target))
            wrapped = f"{{{{ {LINKS_VARIABLE}[{len(links) - 1}] }}}}"
        else:
            wrapped = target  # mailto:, anchors: nothing to track
        return f"{match.group(1)}{wrapped}{match.group(3)}"

    wrapped_source = _ANCHOR_HREF.sub(route, source)
    pixel = f"{{{{ {PIXEL_VARIABLE} }}}}"
    with_pixel, found = _BODY_END.subn(pixel + "</body>", wrapped_source, count=1)
    return (with_pixel if found else wrapped_source + pixel), tuple(links)


@jinja2.pass_context
def _track_link(context: jinja2.runtime.Context, href: str) -> str:
    tracker = context.get(TRACKER_VARIABLE)
    if tracker is None:
        return href
    url = html.unescape(str(href))
    if not url.startswith(("http://", "https://")):
        return href  # mailto:, anchors, and links that are not ours to follow
    tracked = tracker(url)
    return href if tracked is None else markupsafe.escape(tracked)


def _inline_css(document: str) -> str:
    inlined = _INLINER.inline(document)
    return inlined if "<tbody" in document else _TBODY.sub("", inlined)


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
