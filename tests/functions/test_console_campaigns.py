"""The console's campaign and subscriber actions call the services the CLI and the admin API
call, and refuse with the same words; the form builds the segment and A/B specs the CLI takes.
Real local container, real templates; the console through Flask's test client."""

from __future__ import annotations

import json
import re
import shutil
import sys
from datetime import datetime

import pytest
from campaign_support import add_audience
from support import REPO

from shared.cli.main import main
from shared.console import campaign_form
from shared.console.access import ConsoleAccess
from shared.console.app import create_console_app
from shared.domain.errors import Conflict
from shared.services.audience_estimate import cost_usd

KEY = "test-admin-key"


@pytest.fixture
def world(make_container, tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    container = make_container(template_root=templates)
    add_audience(container, 30, make=lambda i: {"lists": ["weekly"] if i < 12 else []})
    app = create_console_app(lambda: container, ConsoleAccess.from_settings(container.settings))
    client = app.test_client()
    token = _csrf(client.get("/sign-in").get_data(as_text=True))
    client.post("/sign-in", data={"csrf_token": token, "key": KEY})
    return container, client


def _csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def post(client, path: str, **form):
    token = _csrf(client.get("/campaigns").get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **form})


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


def error_text(page: str, key: str) -> str:
    found = re.search(rf'id="{re.escape(key)}-error"[^>]*>([^<]+)<', page)
    assert found, f"no error next to {key}"
    import html

    return html.unescape(found.group(1))


def test_a_bad_segment_is_refused_with_the_clis_words_next_to_the_segment(
    world, monkeypatch, capsys
) -> None:
    container, client = world
    segment = {"field": "shoe_size", "op": "==", "value": 42}
    code, out = cli(monkeypatch, capsys, "campaign", "create", "--name", "X", "--template",
                    "newsletter", "--segment", json.dumps(segment))  # fmt: skip
    assert code == 1
    answer = post(client, "/campaigns/new", name="X", template="newsletter",
                  g0_r0_kind="field", g0_r0_name="shoe_size", g0_r0_op="==",
                  g0_r0_value="42")  # fmt: skip
    assert answer.status_code == 400
    shown = error_text(answer.get_data(as_text=True), "segment")
    assert out.strip() == f"Error: {shown}"
    assert container.campaign_service.list_campaigns() == []


def test_the_segment_builder_makes_all_any_not_groups() -> None:
    form = {
        "seg_match": "any",
        "g0_match": "all", "g0_r0_kind": "list", "g0_r0_name": "weekly",
        "g0_r1_kind": "attribute", "g0_r1_name": "plan.tier", "g0_r1_op": "in",
        "g0_r1_value": "pro, team", "g0_r1_not": "1",
        "g1_not": "1", "g1_match": "any", "g1_r0_kind": "clicked_within_days", "g1_r0_value": "30",
        "g1_r1_kind": "signed_up", "g1_r1_op": "before", "g1_r1_value": "2025-01-01",
        "g1_r2_kind": "field", "g1_r2_name": "timezone", "g1_r2_op": "exists",
    }  # fmt: skip
    assert campaign_form.segment_from_form(form) == {"any": [
        {"all": [{"list": "weekly"},
                 {"not": {"attribute": "plan.tier", "op": "in", "value": ["pro", "team"]}}]},
        {"not": {"any": [{"clicked_within_days": 30}, {"signed_up": {"before": "2025-01-01"}},
                         {"field": "timezone", "op": "exists"}]}},
    ]}  # fmt: skip
    assert campaign_form.describe_segment(campaign_form.segment_from_form(form)) == (
        '((on list weekly and not plan.tier in ["pro", "team"]) or not (clicked in the last'
        " 30 days or signed up before 2025-01-01 or timezone exists))"
    )
    assert campaign_form.segment_from_form({"g0_r0_kind": "list"}) == {}
    raw = {"segment_json": '{"not": {"tag": "vip"}}', "g0_r0_name": "ignored"}
    assert campaign_form.segment_from_form(raw) == {"not": {"tag": "vip"}}


def test_create_an_ab_campaign_with_variables_and_a_schedule_in_a_time_zone(world) -> None:
    container, client = world
    answer = post(client, "/campaigns/new", name="Spring", template="newsletter",
                  subject="Hi {{ first_name }}, {{ season }}", variables="season=spring\n",
                  g0_r0_kind="list", g0_r0_name="weekly", ab_enabled="1", v0_name="A",
                  v1_name="B", v1_subject="B for {{ first_name }}", ab_test_fraction="50",
                  ab_min_sample="5", when="schedule", at="2031-03-01T09:30",
                  zone="Europe/Berlin")  # fmt: skip
    assert answer.status_code == 303
    (campaign,) = container.campaign_service.list_campaigns()
    assert campaign.segment == {"list": "weekly"} and campaign.context == {"season": "spring"}
    assert campaign.ab["test_fraction"] == 0.5 and campaign.ab["min_sample"] == 5
    assert campaign.status == "scheduled"
    assert campaign.scheduled_at == datetime.fromisoformat("2031-03-01T09:30+01:00").timestamp()
    page = client.get(f"/campaigns/{campaign.id}/manage").get_data(as_text=True)
    estimate = container.audience_estimator.estimate(campaign.segment, campaign.ab, campaign.id)
    assert estimate.total == 12 and sum(estimate.variants.values()) + estimate.remainder == 12
    assert f"{estimate.total} subscribers: " in page
    sample = container.subscribers.id_for("reader0@example.com")
    message = container.campaign_service.preview_message(campaign.id, "B", sample)
    assert message.subject == "B for Reader0" and "Reader0" in message.html
    shown = container.campaign_service.preview_message(campaign.id, "A", sample)
    assert shown.subject == "Hi Reader0, spring"


def test_a_test_send_keeps_a_name_with_braces_literal(world) -> None:
    container, client = world
    campaign = container.campaign_service.create(
        {"name": "T", "template": "newsletter", "subject": "Hi {{ first_name }}"}
    )
    from shared.domain.subscriber import CONFIRMED, Subscriber

    email = "curly@example.com"
    curly = Subscriber(id=container.subscribers.id_for(email), email=email, status=CONFIRMED,
                       first_name="{{ 7 * 7 }}")  # fmt: skip
    container.subscribers.create(curly)
    answer = post(client, f"/campaigns/{campaign.id}/test", to=email)
    assert answer.status_code == 303
    (sent,) = container.campaign_service.test_send(campaign.id, email)
    assert sent.subject == "[TEST] Hi {{ 7 * 7 }}"


def test_duplicate_and_delete_a_draft_from_the_console_cli_and_admin_api(
    world, monkeypatch, capsys, function_client
) -> None:
    container, client = world
    service = container.campaign_service
    original = service.create({"name": "Original", "template": "newsletter",
                                "segment": {"list": "weekly"}, "context": {"a": "1"}})  # fmt: skip
    answer = post(client, f"/campaigns/{original.id}/duplicate")
    assert answer.status_code == 303
    copy = next(c for c in service.list_campaigns() if c.id != original.id)
    assert copy.name == "Original (copy)" and copy.segment == original.segment
    assert copy.context == {"a": "1"} and copy.status == "draft"
    assert answer.location.endswith(f"/campaigns/{copy.id}/manage")

    code, out = cli(monkeypatch, capsys, "campaign", "duplicate", original.id)
    assert code == 0 and "a copy of" in out
    api = function_client("admin")
    auth = {"Authorization": f"Bearer {KEY}"}
    made = api.post(f"/campaigns/{original.id}/duplicate", headers=auth)
    assert made.status_code == 201 and made.get_json()["name"] == "Original (copy)"
    assert len(service.list_campaigns()) == 4

    service.send_now(original.id)
    with pytest.raises(Conflict) as refused:
        service.delete_draft(original.id)
    words = str(refused.value)
    assert "only drafts can be deleted" in words
    code, out = cli(monkeypatch, capsys, "campaign", "delete", original.id)
    assert code == 1 and out.strip() == f"Error: {words}"
    assert api.delete(f"/campaigns/{original.id}", headers=auth).status_code == 409
    answer = post(client, f"/campaigns/{original.id}/delete", confirm="yes")
    assert answer.status_code == 409
    assert error_text(answer.get_data(as_text=True), "delete") == words

    assert post(client, f"/campaigns/{copy.id}/delete").status_code == 400  # not confirmed
    assert post(client, f"/campaigns/{copy.id}/delete", confirm="yes").status_code == 303
    code, _ = cli(monkeypatch, capsys, "campaign", "delete", made.get_json()["id"])
    assert code == 0
    assert {c.id for c in service.list_campaigns()} == {original.id} | {
        c.id for c in service.list_campaigns() if c.name == "Original (copy)"
    }
    assert len(service.list_campaigns()) == 2


def test_a_refused_action_shows_the_services_words_next_to_it(world) -> None:
    container, client = world
    campaign = container.campaign_service.create({"name": "P", "template": "newsletter"})
    answer = post(client, f"/campaigns/{campaign.id}/pause")
    assert answer.status_code == 409
    with pytest.raises(Conflict) as refused:
        container.campaign_service.pause(campaign.id)
    assert error_text(answer.get_data(as_text=True), "pause") == str(refused.value)
    past = {"at": "2001-01-01T00:00", "zone": "UTC"}
    answer = post(client, f"/campaigns/{campaign.id}/schedule", **past)
    assert "the scheduled time is in the past" in error_text(answer.get_data(as_text=True),
                                                             "schedule")  # fmt: skip
    answer = post(client, f"/campaigns/{campaign.id}/test", to="not an address")
    assert error_text(answer.get_data(as_text=True), "test").startswith("email is not valid")


def test_the_cost_estimate_follows_the_price_table() -> None:
    assert cost_usd(0) == 0
    assert cost_usd(2_000_000) == pytest.approx(2 * cost_usd(1_000_000))
    assert 0.2 < cost_usd(1_000_000) < 0.6  # the README's measured ~$0.37 per million
