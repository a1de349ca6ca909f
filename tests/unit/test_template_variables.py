"""What a template sees (README "Template variables"): JSON campaign variables from the CLI,
the subject as `{{ subject }}`, subscriber attributes at the top level, missing attributes
that can be tested, and a preview that warns about empty values and lists each variable."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import jinja2
import pytest
from campaign_support import add_audience
from support import REPO

from shared.adapters.local.filesystem_blobs import FilesystemBlobs
from shared.bootstrap import Container
from shared.cli.main import main
from shared.domain.links import Links, local_base_urls
from shared.domain.messages import MARKETING, Recipient, RenderRequest
from shared.services.audience import recipient
from shared.services.rendering import Renderer
from shared.services.templating import TemplateCatalog

GREETING = """{% extends "email/base.html" %}
{% block subject %}{{ subject }}{% endblock %}
{% block body %}
<p>Hello {{ first_name }},</p>
{% if city %}<p>News from {{ city }} ({{ attributes.city }}).</p>{% endif %}
{% for item in items %}<p>{{ item.name }}: {{ item.price }}</p>{% endfor %}
<p>{{ plan | default("free") }} plan, issue {{ issue }}</p>
{% endblock %}
"""
ITEMS = [{"name": "Mug", "price": "€12"}, {"name": "Tee", "price": "€25"}]


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    shutil.copytree(REPO / "templates", root)
    (root / "email" / "greeting.html").write_text(GREETING)
    return root


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["mailpipe", *args])
    monkeypatch.setenv("COLUMNS", "200")
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


def renderer() -> Renderer:
    return Renderer(
        Links("k" * 32, local_base_urls("https://m.example")), "a@b.example", "b.example"
    )


def request(**changes) -> RenderRequest:
    fields = {
        "batch_id": "b",
        "template": "greeting",
        "kind": MARKETING,
        "audience_at": 0.0,
        "recipients": [],
        "campaign_id": "c",
        "context": {"items": ITEMS, "issue": 7},
    }
    return RenderRequest(**{**fields, **changes})  # fmt: skip


def test_create_takes_json_variables_from_options_and_a_file(
    make_container: Callable[..., Container], templates: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    container = make_container(template_root=templates)
    (tmp_path / "vars.json").write_text(json.dumps({"items": ITEMS, "issue": 1, "shop": "A"}))
    code, out = cli(monkeypatch, capsys, "campaign", "create", "--name", "Spring",
                    "--template", "greeting", "--id", "spring", "--vars", f"@{tmp_path}/vars.json",
                    "--var-json", 'issue=42', "--var-json", 'flags={"new": true}',
                    "--var", "shop=B")  # fmt: skip
    assert code == 0, out
    context = container.campaigns.get("spring").context
    assert context == {"items": ITEMS, "issue": 42, "shop": "B", "flags": {"new": True}}
    code, out = cli(monkeypatch, capsys, "campaign", "create", "--name", "X", "--template",
                    "greeting", "--var-json", "items=[not json")  # fmt: skip
    assert code != 0 and "--var-json items" in out and "not valid JSON" in out


def test_subject_is_rendered_with_variables_and_is_a_variable(tmp_path: Path) -> None:
    blobs = FilesystemBlobs(tmp_path)
    shutil.copy(REPO / "templates" / "email" / "base.html", tmp_path / "base.html")
    blobs.write("email/base.html", (tmp_path / "base.html").read_bytes())
    blobs.write("email/greeting.html", GREETING.encode())
    compiled = TemplateCatalog(blobs).email("greeting")
    ann = Recipient("s1", "ann@example.com", "Ann", {"attributes": {"city": "Oslo"}})
    email = renderer().render(
        compiled, request(subject="{{ first_name }}, issue {{ issue }} is out"), ann
    )
    assert email.subject == "Ann, issue 7 is out"
    assert "<title>Ann, issue 7 is out</title>" in email.html
    assert "News from Oslo (Oslo)." in email.html and "Mug: €12" in email.html
    assert "free plan" in email.html
    literal = renderer().render(compiled, request(subject="Plain {not a tag}"), ann)
    assert literal.subject == "Plain {not a tag}"


@pytest.fixture
def greeting(tmp_path: Path):
    root = tmp_path / "store"
    shutil.copytree(REPO / "templates", root)
    (root / "email" / "greeting.html").write_text(GREETING)
    return TemplateCatalog(FilesystemBlobs(root)).email("greeting")


def test_attributes_are_top_level_names_below_campaign_variables_and_built_ins(greeting) -> None:
    person = Recipient("s1", "ann@example.com", "Ann",
                       {"attributes": {"city": "Oslo", "issue": 99, "first_name": "Attr",
                                       "plan": "pro"}})  # fmt: skip
    html = renderer().render(greeting, request(subject="Hi"), person).html
    assert "Hello Ann," in html  # a built-in wins over an attribute of the same name
    assert "issue 7" in html  # a campaign variable wins over an attribute
    assert "pro plan" in html and "News from Oslo (Oslo)." in html


def test_a_missing_attribute_can_be_tested_but_not_printed(greeting, tmp_path: Path) -> None:
    nobody = Recipient("s2", "bo@example.com", "Bo", {"attributes": {}})
    html = renderer().render(greeting, request(subject="Hi"), nobody).html
    assert "News from" not in html and "free plan" in html
    root = tmp_path / "printing"
    shutil.copytree(REPO / "templates", root)
    (root / "email" / "city.html").write_text("<title>x</title><p>{{ city }}</p>")
    (root / "email" / "compare.html").write_text(
        '<title>x</title>{% if city == "Oslo" %}north{% elif city != "Rome" %}elsewhere{% endif %}'
    )
    catalog = TemplateCatalog(FilesystemBlobs(root))
    with pytest.raises(jinja2.UndefinedError, match="city"):
        renderer().render(catalog.email("city"), request(template="city", subject="x"), nobody)
    compared = renderer().render(catalog.email("compare"), request(template="compare"), nobody)
    assert "elsewhere" in compared.html


def test_preview_warns_about_empty_values_and_lists_every_variable(
    make_container: Callable[..., Container], templates: Path
) -> None:
    container = make_container(template_root=templates)
    add_audience(container, 2, make=lambda i: {"attributes": {"city": "Oslo"} if i else {}})
    service = container.campaign_service
    service.create({"name": "Spring", "id": "spring", "template": "greeting",
                    "subject": "Hi {{ first_name }}",
                    "context": {"items": ITEMS, "issue": 3}})  # fmt: skip
    report = service.preview("spring")
    assert report.ok, report.summary()
    variant = report.variants[0]
    printed = [w for w in variant.warnings if w.message.startswith("prints ")]
    empty = [(w.recipient, w.file, w.line) for w in printed]
    assert empty == [("synthetic no-name", "email/greeting.html", 4),
                     ("synthetic markup", "email/greeting.html", 7)]  # fmt: skip
    first, second = [w.message for w in printed]
    assert first == "prints an empty value: <p>Hello {{ first_name }},</p>"
    assert second.startswith("prints None (a value that is not set): <p>{{ plan | default(")
    assert variant.variables["first_name"] == "built-in"
    assert variant.variables["subject"] == "built-in"
    assert variant.variables["items"] == "campaign variable"
    assert variant.variables["city"].startswith("subscriber attribute (2 of 5 samples")
    assert "unknown" not in variant.variables  # loop variables are the template's own
    assert "warning" in report.summary()
    small = [w for w in variant.warnings if "HTML_IMAGE_ONLY" in w.message]
    assert len(small) == 1 and "the open pixel counts" in small[0].message  # once per variant
    again = service.preview("spring", variables={"issue": 4, "extra": 1})
    assert again.variants[0].variables["issue"] == "campaign variable"
    assert container.campaigns.get("spring").context["issue"] == 3  # only for that preview


def test_preview_names_a_variable_no_one_has(make_container, templates: Path) -> None:
    (templates / "email" / "typo.html").write_text(
        "<title>x</title>{% if frist_name %}{{ frist_name }}{% endif %}"
    )
    container = make_container(template_root=templates)
    service = container.campaign_service
    service.create({"name": "Typo", "id": "typo", "template": "typo"})
    variables = service.preview("typo").variants[0].variables
    assert (
        variables["frist_name"] == "not set for any sample (no built-in, campaign variable or "
        "sample attribute)"
    )


def test_preview_refuses_a_linked_stylesheet_naming_template_and_line(
    make_container, templates: Path
) -> None:
    (templates / "email" / "linked.html").write_text(
        '<html><head><title>x</title>\n<link rel="stylesheet" href="https://cdn.example.com/a.css">'
        "\n</head><body>x</body></html>"
    )
    container = make_container(template_root=templates)
    service = container.campaign_service
    service.create({"name": "Linked", "id": "linked", "template": "linked"})
    report = service.preview("linked")
    assert not report.ok
    problem = report.problems[0]
    assert (problem.template, problem.file, problem.line) == ("linked", "email/linked.html", 2)
    assert "https://cdn.example.com/a.css" in report.summary()
    assert "email/linked.html line 2" in report.summary()


def test_cli_preview_prints_variables_and_warnings(
    make_container, templates: Path, monkeypatch, capsys
) -> None:
    container = make_container(template_root=templates)
    add_audience(container, 1)
    service = container.campaign_service
    service.create({"name": "S", "id": "s", "template": "greeting", "context": {"items": []}})
    code, out = cli(monkeypatch, capsys, "campaign", "preview", "s")
    assert code != 0 and "give the campaign one (--subject)" in out
    service.create({"name": "S", "id": "s2", "template": "greeting", "subject": "Hi",
                    "context": {"items": [], "issue": 1}})  # fmt: skip
    code, out = cli(monkeypatch, capsys, "campaign", "preview", "s2", "--var-json", "issue=[2]")
    assert code == 0, out
    assert "variable items: campaign variable" in out
    assert "warning" in out and "email/greeting.html line 4" in out and "no-name" in out


def test_recipient_keeps_attributes_under_their_own_name() -> None:
    from shared.domain.subscriber import CONFIRMED, Subscriber

    person = recipient(Subscriber(id="x", email="x@example.com", status=CONFIRMED,
                                  attributes={"city": "Oslo"}))  # fmt: skip
    assert person.variables == {"attributes": {"city": "Oslo"}}  # no doubled payload on the bus
