"""The console's subscriber, template and dead-letter pages on a real local container: what
they show, and that their actions change the stores as the CLI's commands do."""

from __future__ import annotations

import html
import io
import json
import re
import shutil

import pytest
from campaign_support import add_audience
from support import REPO

from shared.console.access import ConsoleAccess
from shared.console.app import create_console_app
from shared.ports import OutboundMessage

KEY = "test-admin-key"
WAREHOUSE_SUB = "warehouse-on-analytics-events"


@pytest.fixture
def world(make_container, tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    container = make_container(template_root=templates, bus_max_attempts=1)
    people = add_audience(container, 5, make=lambda i: {"lists": ["weekly"]})
    app = create_console_app(lambda: container, ConsoleAccess.from_settings(container.settings))
    client = app.test_client()
    client.post("/sign-in", data={"csrf_token": _csrf(client.get("/sign-in")), "key": KEY})
    return container, client, people


def _csrf(answer) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', answer.get_data(as_text=True)).group(1)


def post(client, path: str, **form):
    return client.post(path, data={"csrf_token": _csrf(client.get("/campaigns")), **form})


def test_search_edit_suppress_and_unsubscribe_a_subscriber(world) -> None:
    container, client, people = world
    page = client.get("/subscribers?q=reader3@example.com").get_data(as_text=True)
    assert f'data-subscriber="{people[3].id}"' in page and "reader4" not in page
    page = client.get("/subscribers?q=Reader").get_data(as_text=True)
    assert page.count("data-subscriber=") == 5
    answer = post(client, f"/subscribers/{people[3].id}/edit", lists="weekly, vip",
                  tags="b2b", attributes='{"plan": {"tier": "pro"}}')  # fmt: skip
    assert answer.status_code == 303
    edited = container.subscribers.get(people[3].id)
    assert edited.lists == ["vip", "weekly"] and edited.attributes == {"plan": {"tier": "pro"}}
    assert edited.consent[-1]["source"] == "console" and edited.tags == ["b2b"]
    answer = post(client, f"/subscribers/{people[3].id}/edit", lists="", attributes="[1]")
    assert answer.status_code == 400 and "attributes must be a JSON object" in answer.get_data(
        as_text=True
    )
    assert post(client, f"/subscribers/{people[1].id}/suppress", note="asked by phone")
    assert container.suppressions.reason(people[1].email) == "manual"
    assert not container.subscribers.get(people[1].id).mailable
    assert post(client, f"/subscribers/{people[2].id}/unsubscribe").status_code == 303
    assert container.subscribers.get(people[2].id).status == "unsubscribed"
    listed = client.get("/suppressions").get_data(as_text=True)
    assert "manual" in listed and "unsubscribed" in listed and people[1].email not in listed
    check = client.get(f"/suppressions?email={people[1].email}").get_data(as_text=True)
    assert "manual" in re.search(r'id="check-result">(.*?)</p>', check, re.S).group(1)


def test_gdpr_export_and_erase_with_a_confirmation_step(world) -> None:
    container, client, people = world
    person = people[0]
    exported = client.get(f"/subscribers/{person.id}/export")
    assert exported.headers["Content-Disposition"].startswith("attachment")
    assert json.loads(exported.get_data())["subscriber"]["email"] == person.email
    confirm = client.get(f"/subscribers/{person.id}/erase").get_data(as_text=True)
    assert "Type the address to confirm" in confirm
    refused = post(client, f"/subscribers/{person.id}/erase", confirm="someone@else.com")
    assert refused.status_code == 400 and container.subscribers.find(person.id) is not None
    answer = post(client, f"/subscribers/{person.id}/erase", confirm=person.email.upper())
    assert answer.status_code == 303
    assert container.subscribers.find(person.id) is None
    assert container.suppressions.reason(person.email) == "erased"
    assert client.get(f"/subscribers/{person.id}").status_code == 404


def test_dead_letters_list_show_replay_and_purge(world) -> None:
    container, client, _ = world
    bus = container.bus
    bus.publish("analytics-events", [OutboundMessage(b'[{"n": %d}]' % n) for n in range(3)])
    for d in bus.pull(WAREHOUSE_SUB, 10):
        bus.nack(WAREHOUSE_SUB, d.message_id, f"boom {d.message_id}")
    page = client.get("/dead-letters").get_data(as_text=True)
    assert re.search(rf'data-subscription="{WAREHOUSE_SUB}".*?>3<', page, re.S)
    letters = container.dead_letters.list(WAREHOUSE_SUB, 10)
    listing = client.get(f"/dead-letters/{WAREHOUSE_SUB}").get_data(as_text=True)
    assert all(d.message_id in listing for d in letters)
    shown = html.unescape(
        client.get(f"/dead-letters/{WAREHOUSE_SUB}/{letters[0].message_id}").get_data(as_text=True)
    )
    assert '"n": 0' in shown and f"boom {letters[0].message_id}" in shown
    answer = post(client, f"/dead-letters/{WAREHOUSE_SUB}/replay", id=letters[0].message_id)
    assert answer.status_code == 303 and container.dead_letters.counts()[WAREHOUSE_SUB] == 2
    post(client, f"/dead-letters/{WAREHOUSE_SUB}/purge")  # not confirmed: nothing goes
    assert container.dead_letters.counts()[WAREHOUSE_SUB] == 2
    post(client, f"/dead-letters/{WAREHOUSE_SUB}/purge", confirm="yes")
    assert container.dead_letters.counts()[WAREHOUSE_SUB] == 0


def test_a_template_version_is_previewed_refused_with_file_and_line_and_saved(world) -> None:
    container, client, _ = world
    library = container.template_library
    source = library.source("newsletter")
    lines = source.splitlines(keepends=True)
    broken = "".join([*lines[:5], "<p>{{ coupon.code }}</p>\n", *lines[5:]])  # line 6
    page = client.get("/templates/newsletter").get_data(as_text=True)
    assert "preview ok" in page and "srcdoc=" in page
    draft = post(client, "/templates/newsletter/draft", source=broken).get_json()
    assert not draft["ok"] and draft["problems"][0]["file"] == "email/newsletter.html"
    assert draft["problems"][0]["line"] == 6 and "coupon" in draft["problems"][0]["message"]
    answer = post(client, "/templates/newsletter", source=broken, do="save")
    assert answer.status_code == 400 and "email/newsletter.html line 6" in answer.get_data(
        as_text=True
    )
    assert library.source("newsletter") == source and library.versions("newsletter") == []
    edited = source.replace("Read the release notes", "Read the notes")
    good = post(client, "/templates/newsletter/draft", source=edited).get_json()
    assert good["ok"] and "Read the notes" in good["html"]
    assert post(client, "/templates/newsletter", source=edited, do="save").status_code == 303
    assert library.source("newsletter") == edited
    (kept,) = library.versions("newsletter")
    assert library.version_source("newsletter", kept.key) == source
    old = client.get(f"/templates/newsletter/versions/{kept.key}").get_data(as_text=True)
    assert "Read the release notes" in old
    assert client.get("/templates/newsletter/versions/email/welcome.html").status_code == 404


def test_the_import_screen_maps_previews_and_starts_with_the_import_service(world) -> None:
    container, client, _ = world
    export = b"E-mail,Vorname,Plan\nann@example.com,Ann,pro\nnope,Bo,free\n"
    token = _csrf(client.get("/import"))
    answer = client.post("/import", data={"csrf_token": token,
                                          "file": (io.BytesIO(export), "x.csv")},
                         content_type="multipart/form-data")  # fmt: skip
    assert answer.status_code == 303
    import_id = answer.location.rsplit("/", 1)[1]
    page = html.unescape(client.get(f"/import/{import_id}").get_data(as_text=True))
    assert 'value="attributes.plan" selected' in page and 'value="first_name" selected' in page
    assert "<td>3</td><td>email is not valid" in page
    refused = post(client, f"/import/{import_id}/start", **{"map-0": "email", "map-1": "email",
                                                            "map-2": "ignore"})  # fmt: skip
    expected = container.imports.inspect(import_id, {"E-mail": "email", "Vorname": "email",
                                                     "Plan": "ignore"}).error  # fmt: skip
    assert refused.status_code == 400 and expected
    assert html.unescape(refused.get_data(as_text=True)).count(expected) >= 1
    assert container.imports.status(import_id).status == "uploaded"
    started = post(client, f"/import/{import_id}/start", **{"map-0": "email",
                                                            "map-1": "first_name",
                                                            "map-2": "ignore"})  # fmt: skip
    assert started.status_code == 303
    job = container.imports.status(import_id)
    assert job.status == "scanning" and job.mapping["Plan"] == "ignore"
    progress = client.get(f"/import/{import_id}").get_data(as_text=True)
    assert 'id="import-progress"' in progress and 'http-equiv="refresh"' in progress
