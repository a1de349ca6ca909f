"""Templates: sandboxed, autoescaped, strict; layouts flattened and CSS inlined once per version."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import jinja2
import pytest

from shared.adapters.local.filesystem_blobs import FilesystemBlobs
from shared.domain.errors import NotFound, PermanentFailure
from shared.services.templating import StylesheetLinked, TemplateCatalog

BASE = """<html><head><title>{% block subject %}{% endblock %}</title>
<style>td { color: red } .big { font-size: 20px }</style></head>
<body>{% block body %}{% endblock %}</body></html>"""
CHILD = """{% extends "email/base.html" %}
{% block subject %}Hi {{ first_name }} & co{% endblock %}
{% block body %}<table>{% for item in items %}<tr><td class="big">{{ item }}</td></tr>{% endfor %}
</table><a href="{{ url }}">Go</a>{% endblock %}"""


@pytest.fixture
def catalog(tmp_path: Path) -> TemplateCatalog:
    blobs = FilesystemBlobs(tmp_path)
    blobs.write("email/base.html", BASE.encode())
    blobs.write("email/news.html", CHILD.encode())
    return TemplateCatalog(blobs, check_interval_s=0)


def test_layout_loops_and_inlined_css_survive_flattening(catalog):
    compiled = catalog.email("news")
    html = compiled.html.render(first_name="Ann", items=["a", "b"], url="https://x.example/")
    assert html.count('<td class="big" style="color: red;font-size: 20px;">') == 2
    assert "<style>" not in html and "<tbody>" not in html
    assert '<a href="https://x.example/">Go</a>' in html
    assert compiled.subject.render(first_name="Ann") == "Hi Ann & co"


def test_text_part_is_derived_when_missing(catalog):
    text = catalog.email("news").text.render(first_name="Ann", items=["one"], url="https://x/")
    assert "one" in text and "Go <https://x/>" in text and "<td" not in text


def test_values_are_autoescaped_in_html(catalog):
    html = catalog.email("news").html.render(first_name="x", items=["<b>"], url="u")
    assert "&lt;b&gt;" in html and "<b>" not in html


def test_missing_variables_fail_loudly(catalog):
    with pytest.raises(jinja2.UndefinedError):
        catalog.email("news").html.render(first_name="Ann", url="u")


def test_the_sandbox_refuses_unsafe_attribute_access(tmp_path):
    blobs = FilesystemBlobs(tmp_path)
    blobs.write("email/evil.html", b"<title>x</title>{{ x.__class__.__mro__ }}")
    with pytest.raises(jinja2.exceptions.SecurityError):
        TemplateCatalog(blobs).email("evil").html.render(x=1)


def test_compiled_once_per_version_and_recompiled_on_change(catalog, tmp_path):
    first = catalog.email("news")
    assert catalog.email("news") is first
    time.sleep(0.01)
    (tmp_path / "email" / "base.html").write_text(BASE.replace("red", "blue"))
    second = catalog.email("news")
    assert second is not first
    assert "color: blue" in second.html.render(first_name="", items=["a"], url="u")


def test_unknown_and_broken_templates_are_named(catalog, tmp_path):
    with pytest.raises(NotFound, match="nope"):
        catalog.email("nope")
    (tmp_path / "email" / "broken.html").write_text("<title>x</title>{% for %}")
    with pytest.raises(PermanentFailure, match="broken"):
        catalog.email("broken")
    (tmp_path / "email" / "untitled.html").write_text("<p>no title</p>")
    with pytest.raises(PermanentFailure, match="title"):
        catalog.email("untitled")


def test_layout_statements_cannot_run_code_while_flattening(tmp_path):
    marker = tmp_path / "ran"
    blobs = FilesystemBlobs(tmp_path)
    evil = (
        '<title>x</title>{% include cycler.__init__.__globals__.os.popen("touch '
        + str(marker)
        + '").read() %}'
    )
    blobs.write("email/evil.html", evil.encode())
    with pytest.raises(jinja2.exceptions.SecurityError):
        TemplateCatalog(blobs).email("evil").html.render(cycler=None)
    assert not marker.exists()


RESPONSIVE = """<html><head><title>Sale</title><style>
.grid { width: 600px }
@media only screen and (max-width: 620px) { .grid { width: 100% !important } }
@font-face { font-family: Brand; src: url(https://fonts.example.com/brand.woff2) }
@supports (display: grid) { .grid { display: grid } }
</style></head><body><table class="grid"><tr><td>x</td></tr></table></body></html>"""


def test_at_rules_that_cannot_be_inlined_are_kept_in_a_style_block(tmp_path):
    blobs = FilesystemBlobs(tmp_path)
    blobs.write("email/sale.html", RESPONSIVE.encode())
    html = TemplateCatalog(blobs).email("sale").html.render()
    assert '<table class="grid" style="width: 600px;">' in html  # the plain rule is inlined
    style = html[html.index("<style>") : html.index("</style>")]
    assert "@media only screen and (max-width: 620px)" in style
    assert ".grid { width: 100% !important }" in style
    assert "@font-face" in style and "@supports" in style
    assert ".grid { width: 600px }" not in style  # what was inlined is not kept twice


class _StylesheetServer(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:
        _StylesheetServer.requests.append(self.path)
        body = b"td { color: red }"
        self.send_response(200)
        self.send_header("Content-Type", "text/css")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stylesheet_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StylesheetServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _StylesheetServer.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_linked_stylesheet_is_refused_with_file_and_line_and_never_fetched(
    tmp_path, stylesheet_server
):
    blobs = FilesystemBlobs(tmp_path)
    layout = BASE.replace(
        "</head>", f'\n\n<link rel="stylesheet" href="{stylesheet_server}/x.css">\n</head>'
    )
    blobs.write("email/base.html", layout.encode())
    blobs.write("email/news.html", CHILD.encode())
    with pytest.raises(StylesheetLinked) as refused:
        TemplateCatalog(blobs).email("news")
    assert refused.value.file == "email/base.html" and refused.value.line == 4
    assert f"{stylesheet_server}/x.css" in str(refused.value)
    assert _StylesheetServer.requests == []
