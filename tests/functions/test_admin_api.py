"""The admin API through functions-framework, on the real local store, bus and templates."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from campaign_support import add_audience
from support import REPO

from shared import topology
from shared.domain.messages import SendBatch
from shared.services.imports import ImportStep

KEY = "test-admin-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
BROKEN = """{% extends "email/base.html" %}
{% block subject %}Hello{% endblock %}
{% block body %}
<p>Hi {{ first_name }},</p>
<p>Your code: {{ coupon.code }}</p>
{% endblock %}
"""


@pytest.fixture
def templates(tmp_path):
    """The repo's templates plus a broken one, in a template store of its own."""
    root = tmp_path / "templates"
    shutil.copytree(REPO / "templates", root)
    (root / "email" / "broken.html").write_text(BROKEN)
    return root


@pytest.fixture
def api(make_container, function_client, templates):
    container = make_container(template_root=templates)
    client = function_client("admin")

    def call(method: str, path: str, body=None, headers=AUTH, **kwargs):
        if body is not None and not isinstance(body, str | bytes):
            kwargs["data"], kwargs["content_type"] = json.dumps(body), "application/json"
        elif body is not None:
            kwargs["data"] = body
        return client.open(path, method=method, headers=headers, **kwargs)

    call.container = container
    return call


def queued(container, topic: str) -> list[bytes]:
    sub = topology.subscriptions_of(topic)[0].name
    return [d.data for d in container.bus.pull(sub, 100, lease_s=60)]


def create(api, **spec):
    response = api("POST", "/campaigns", {"name": "Spring", "template": "newsletter", **spec})
    assert response.status_code == 201, response.json
    return response.json["id"]


# -- authorization -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": "Basic x"}],
)
def test_a_missing_or_wrong_key_is_401(api, headers):
    response = api("GET", "/campaigns", headers=headers)
    assert response.status_code == 401
    assert response.json == {
        "error": "missing or wrong admin API key (Authorization: Bearer <key>)"
    }


def test_without_a_configured_key_the_api_is_disabled(make_container, function_client):
    make_container(admin_api_key="")
    response = function_client("admin").get("/campaigns", headers=AUTH)
    assert response.status_code == 503
    assert response.json["error"] == "admin API disabled: set MAILPIPE_ADMIN_API_KEY"


# -- campaigns ---------------------------------------------------------------------------------


def test_create_list_and_show(api):
    campaign_id = create(api, segment={"list": "weekly"})
    assert campaign_id.startswith("spring-")
    listed = api("GET", "/campaigns").json
    assert [c["id"] for c in listed] == [campaign_id]
    shown = api("GET", f"/campaigns/{campaign_id}").json
    assert shown["status"] == "draft" and shown["segment"] == {"list": "weekly"}
    assert shown["delivery"]["batches"] == 0
    assert api("GET", "/campaigns?status=sending").json == []


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"name": "x"}, "template", "template must name an email template"),
        ({"name": "x", "template": "nope"}, "template", "no email template 'nope'"),
        ({"name": "x", "template": "newsletter", "segment": {"all": []}}, "segment",
         "segment.all must be a non-empty list"),
    ],
)  # fmt: skip
def test_bad_campaigns_are_400_naming_the_field(api, spec, field, message):
    response = api("POST", "/campaigns", spec)
    assert response.status_code == 400
    assert message in response.json["error"] and response.json["field"] == field


def test_unknown_campaigns_and_routes_are_404(api):
    assert api("GET", "/campaigns/nope").status_code == 404
    assert api("POST", "/campaigns/nope/send").status_code == 404
    assert api("GET", "/campaigns/nope/send").status_code == 404
    assert api("DELETE", "/campaigns").status_code == 404
    assert api("GET", "/nowhere").json["error"] == "no admin route GET /nowhere"


def test_send_queues_the_dispatch_and_a_second_send_is_409(api):
    container = api.container
    add_audience(container, 3)
    campaign_id = create(api)
    response = api("POST", f"/campaigns/{campaign_id}/send")
    assert response.status_code == 200 and response.json["status"] == "sending"
    [message] = [json.loads(m) for m in queued(container, topology.CAMPAIGN_DISPATCH)]
    assert message["kind"] == "campaign" and message["campaign_id"] == campaign_id
    again = api("POST", f"/campaigns/{campaign_id}/send")
    assert again.status_code == 409
    assert "cannot send campaign" in again.json["error"] and "it is sending" in again.json["error"]


def test_a_broken_template_is_caught_before_the_campaign_starts(api):
    add_audience(api.container, 2)
    campaign_id = create(api, template="broken")
    preview = api("POST", f"/campaigns/{campaign_id}/preview")
    assert preview.status_code == 200 and preview.json["ok"] is False
    problem = preview.json["variants"][0]["problems"][0]
    assert (problem["file"], problem["line"]) == ("email/broken.html", 5)
    assert "'coupon' is undefined" in problem["message"]

    response = api("POST", f"/campaigns/{campaign_id}/send")
    assert response.status_code == 400
    assert "email/broken.html line 5" in response.json["error"]
    assert "nothing was sent" in response.json["error"]
    assert api("GET", f"/campaigns/{campaign_id}").json["status"] == "draft"
    assert queued(api.container, topology.CAMPAIGN_DISPATCH) == []


def test_preview_lists_variables_and_warns_about_empty_values(api):
    (api.container.settings.template_root / "email" / "hello.html").write_text(
        '{% extends "email/base.html" %}{% block subject %}Hi{% endblock %}\n'
        "{% block body %}<p>Hello {{ first_name }}, {{ headline | default('news') }}</p>"
        "{% endblock %}"
    )
    campaign_id = create(api, template="hello")
    preview = api("POST", f"/campaigns/{campaign_id}/preview", {"variables": {"headline": "Hi"}})
    assert preview.status_code == 200 and preview.json["ok"] is True, preview.json
    variant = preview.json["variants"][0]
    assert variant["variables"]["headline"] == "campaign variable"
    assert variant["variables"]["first_name"] == "built-in"
    empty = [w for w in variant["warnings"] if w["recipient"] == "synthetic no-name"]
    assert empty[0]["file"] == "email/hello.html" and empty[0]["line"] == 2
    assert "prints an empty value" in empty[0]["message"]
    bad = api("POST", f"/campaigns/{campaign_id}/preview", {"variables": ["x"]})
    assert bad.status_code == 400 and "variables must be a JSON object" in bad.json["error"]


def test_schedule_then_pause_resume_cancel(api):
    campaign_id = create(api)
    at = time.time() + 3600
    response = api("POST", f"/campaigns/{campaign_id}/schedule", {"at": at})
    assert response.json["status"] == "scheduled" and response.json["scheduled_at"] == at
    assert api("POST", f"/campaigns/{campaign_id}/pause").json["status"] == "paused"
    resumed = api("POST", f"/campaigns/{campaign_id}/resume").json
    assert resumed["status"] == "scheduled" and resumed["republished_batches"] == 0
    assert api("POST", f"/campaigns/{campaign_id}/cancel").json["status"] == "cancelled"
    refused = api("POST", f"/campaigns/{campaign_id}/resume")
    assert refused.status_code == 409 and "it is cancelled" in refused.json["error"]


def test_scheduling_in_the_past_or_at_nonsense_is_400(api):
    campaign_id = create(api)
    past = api("POST", f"/campaigns/{campaign_id}/schedule", {"at": "2020-01-01T00:00:00Z"})
    assert past.status_code == 400 and "in the past" in past.json["error"]
    nonsense = api("POST", f"/campaigns/{campaign_id}/schedule", {"at": "tomorrow-ish"})
    assert nonsense.status_code == 400 and "ISO 8601" in nonsense.json["error"]


def test_test_send_queues_one_message_per_variant_outside_the_campaign(api):
    ab = {"variants": [{"name": "A"}, {"name": "B", "subject": "B subject"}], "test_fraction": 0.5}
    campaign_id = create(api, ab=ab)
    response = api("POST", f"/campaigns/{campaign_id}/test", {"to": "me@example.com"})
    assert response.status_code == 200
    subjects = sorted(m["subject"] for m in response.json["queued"])
    assert subjects[1] == "[TEST] [B] B subject" and subjects[0].startswith("[TEST] [A] ")
    batches = [SendBatch.decode(b) for b in queued(api.container, topology.SEND_REQUESTS)]
    assert len(batches) == 2 and all(b.campaign_id is None for b in batches)
    assert all(b.emails[0].recipient == "me@example.com" for b in batches)
    bad = api("POST", f"/campaigns/{campaign_id}/test", {"to": "not-an-address"})
    assert bad.status_code == 400 and bad.json["field"] == "email"


def test_pick_winner_and_resend_failed_answer_clearly(api):
    campaign_id = create(api)
    refused = api("POST", f"/campaigns/{campaign_id}/pick-winner", {"variant": "A"})
    assert refused.status_code == 409 and "has no A/B test" in refused.json["error"]
    draft = api("POST", f"/campaigns/{campaign_id}/resend-failed")
    assert draft.status_code == 409 and "it is draft" in draft.json["error"]


def test_a_non_json_body_is_415(api):
    campaign_id = create(api)
    response = api("POST", f"/campaigns/{campaign_id}/schedule", "at=1", content_type="text/plain")
    assert response.status_code == 415


# -- subscriber import -------------------------------------------------------------------------


def test_import_csv_body(api):
    body = "email,first_name,lists\nann@example.com,Ann,weekly\nnot-an-address,X,\n"
    response = api("POST", "/subscribers/import?confirmed_consent=true&filename=a.csv", body,
                   content_type="text/csv")  # fmt: skip
    assert response.status_code == 200
    summary = response.json
    assert (summary["created"], summary["rejected"]) == (1, 1)
    assert summary["rejects"][0]["line"] == 3 and "@-sign" in summary["rejects"][0]["reason"]
    ann = api.container.subscribers.get(api.container.subscribers.id_for("ann@example.com"))
    assert ann.status == "confirmed" and ann.consent[0]["form_version"] == "a.csv"


def test_import_refuses_a_bad_header_and_non_utf8(api):
    bad = api("POST", "/subscribers/import", "phone\n123\n", content_type="text/csv")
    assert bad.status_code == 400 and "no column holds the email address" in bad.json["error"]
    latin = api("POST", "/subscribers/import", "email\nzoë@example.com\n".encode("latin-1"),
                content_type="text/csv")  # fmt: skip
    assert latin.status_code == 400 and "not UTF-8" in latin.json["error"]


def test_imports_upload_inspect_start_status_and_rejects(api):
    body = "E-Mail;Name;Plan\nann@example.com;Ann;pro\nnope;X;free\n"
    uploaded = api("POST", "/subscribers/imports?filename=list.csv", body, content_type="text/csv")
    assert uploaded.status_code == 201, uploaded.json
    import_id = uploaded.json["import"]["id"]
    inspection = uploaded.json["inspection"]
    assert inspection["delimiter"] == ";"
    assert inspection["mapping"] == {"E-Mail": "email", "Name": "first_name",
                                     "Plan": "attributes.plan"}  # fmt: skip
    assert inspection["preview"][0]["email"] == "ann@example.com"
    assert inspection["rejects"][0]["line"] == 3

    remapped = api("POST", f"/subscribers/imports/{import_id}/inspect",
                   {"mapping": {"Plan": "ignore"}})  # fmt: skip
    assert remapped.status_code == 200 and remapped.json["preview"][0]["attributes"] == {}
    bad = api("POST", f"/subscribers/imports/{import_id}/start", {"mapping": {"Plan": "email"}})
    assert bad.status_code == 400 and "more than one column" in bad.json["error"]
    started = api("POST", f"/subscribers/imports/{import_id}/start", {"confirmed_consent": True})
    assert started.status_code == 202 and started.json["status"] == "scanning"
    assert api("POST", f"/subscribers/imports/{import_id}/start", {}).status_code == 409

    c = api.container
    sub = topology.subscriptions_of(topology.SUBSCRIBER_IMPORTS)[0].name
    for _ in range(10):  # the import function's steps, as the platform pushes them
        for delivery in c.bus.pull(sub, 10):
            c.imports.handle(ImportStep.decode(delivery.data))
            c.bus.ack(sub, delivery.message_id)
    status = api("GET", f"/subscribers/imports/{import_id}")
    assert status.json["status"] == "done" and status.json["counts"]["created"] == 1
    assert [j["id"] for j in api("GET", "/subscribers/imports").json] == [import_id]
    rejects = api("GET", f"/subscribers/imports/{import_id}/rejects")
    assert rejects.status_code == 200 and rejects.mimetype == "text/csv"
    assert rejects.data.decode().splitlines()[1].startswith("3,nope,")
    assert api("GET", "/subscribers/imports/nope").status_code == 404
