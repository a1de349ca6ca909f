"""Poison recipients: one subscriber's data breaks the template (`1 // 0` on an attribute, an
undefined variable), or the mailer chokes on one message. That recipient fails alone, with
its reason in the send ledger; everyone else in the batch is sent; every dispatched recipient
ends with exactly one outcome; the campaign says so, and resend-failed finds them. A failure of
the batch as a whole (a missing template) is dead-lettered with the real error."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from campaign_support import Pipeline, add_audience
from rich.console import Console
from support import REPO, RecordingMailer

from shared import bootstrap, topology
from shared.adapters.local.bus_worker import BusWorker
from shared.bootstrap import Container
from shared.cli import cmd_status
from shared.dashboard.app import create_dashboard_app
from shared.domain.messages import MARKETING, Recipient, RenderRequest
from shared.ports import OutgoingEmail, SendResult
from shared.runner.functions_host import FunctionsHost
from shared.services.sending import SendService

POISON_TEMPLATE = """<html><head><title>Spring</title></head><body>
<p>Hello {{ first_name }}, your share is {{ 100 // attributes.get('divisor', 5) }}.</p>
{% if attributes.get('vip') %}<p>Dear {{ nickname }}</p>{% endif %}
<p><a href="https://example.com/spring">Spring</a></p>
</body></html>
"""
RENDER = "render-on-render-requests"


def _container(tmp_path: Path, local_settings, mailer) -> Container:
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    (templates / "email" / "poison.html").write_text(POISON_TEMPLATE)
    settings = replace(local_settings, template_root=templates, campaign_page_size=250,
                       campaign_batch_size=250, campaign_pages_per_run=2)  # fmt: skip
    container = Container(settings, overrides={"mailer": mailer})
    bootstrap.install(container)
    return container


def test_two_poison_subscribers_fail_alone_and_every_recipient_has_one_outcome(
    tmp_path, local_settings
) -> None:
    mailer = RecordingMailer()
    container = _container(tmp_path, local_settings, mailer)
    try:
        # The preview renders the first subscribers by id: the poison ones are the last two.
        ids = {i: container.subscribers.id_for(f"reader{i}@example.com") for i in range(1_001)}
        zero, vip = sorted(ids, key=ids.__getitem__)[-2:]
        poison = {zero: {"divisor": 0}, vip: {"vip": True}}
        add_audience(container, 1_001, make=lambda i: {"attributes": poison.get(i, {"divisor": 5})})
        service = container.campaign_service
        campaign = service.create({"name": "Poison", "template": "poison", "id": "poison"})
        service.send_now(campaign.id)
        Pipeline(container).drain(timeout_s=120)

        shown = service.show(campaign.id)
        delivery = shown["delivery"]
        assert shown["dispatched"] == 1_001
        assert sum(delivery["outcomes"].values()) == 1_001, "one outcome per dispatched recipient"
        assert delivery["outcomes"] == {"sent": 999, "failed": 2}
        assert sorted(Counter(e.subscriber_id for e in mailer.sent).values()) == [1] * 999
        assert "ZeroDivisionError" in delivery["reasons"][ids[zero]]
        assert "nickname" in delivery["reasons"][ids[vip]]
        assert (delivery["failed"], delivery["pending"], delivery["complete"]) == (2, 0, True)
        assert shown["status"] == "sent" and "2 failed" in delivery["summary"]
        assert container.dead_letters.counts()[RENDER] == 0, "no batch was dead-lettered"
        assert "2 failed" in _status_text(container)
        page = _dashboard_page(container, campaign.id)
        assert "2 failed" in page and "ZeroDivisionError" in page

        result = service.resend_failed(campaign.id)
        assert (result["recipients"], result["batches"]) == (2, 1)
    finally:
        bootstrap.install(None)


def test_a_campaign_is_delivering_while_recipients_are_pending(tmp_path, local_settings) -> None:
    container = _container(tmp_path, local_settings, RecordingMailer())
    try:
        add_audience(container, 300, make=lambda i: {"attributes": {"divisor": 5}})
        service = container.campaign_service
        campaign = service.create({"name": "Half", "template": "poison", "id": "half"})
        service.send_now(campaign.id)
        pipeline = Pipeline(container)
        pipeline.step("dispatch-on-campaign-dispatch")
        pipeline.step(RENDER, limit=1)  # one of two batches rendered ...
        pipeline.step("send-on-send-requests")  # ... and sent; the other still waits

        shown = service.show(campaign.id)
        assert shown["dispatch_status"] == "sent"
        assert shown["status"] == "delivering"
        delivery = shown["delivery"]
        assert delivery["outcomes"] == {"sent": 250}
        assert (delivery["pending"], delivery["complete"]) == (50, False)
        assert delivery["summary"] == "50 pending"
        assert "50 pending" in _status_text(container)
        page = _dashboard_page(container, campaign.id)
        assert "<strong>delivering</strong>" in page and "50 pending" in page

        pipeline.drain()
        assert service.show(campaign.id)["status"] == "sent"
        assert "half" not in _status_text(container), "all sent: no longer in flight"
        assert "<strong>sent</strong>" in _dashboard_page(container, campaign.id)
    finally:
        bootstrap.install(None)


def _status_text(container: Container) -> str:
    """`mailpipe status`'s campaigns table."""
    console = Console(width=200, record=True)
    console.print(cmd_status._campaigns_in_flight(container))
    return console.export_text()


def _dashboard_page(container: Container, campaign_id: str) -> str:
    app = create_dashboard_app(lambda: container.dashboards,
                               delivery=container.campaign_service.delivery)  # fmt: skip
    response = app.test_client().get(f"/campaigns/{campaign_id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


class ChokingMailer(RecordingMailer):
    """Breaks (as a provider adapter might on a message it cannot encode) on any chunk that
    holds one given recipient."""

    def __init__(self, poison: str) -> None:
        super().__init__()
        self.poison = poison

    def send(self, emails: Sequence[OutgoingEmail]) -> list[SendResult]:
        if any(e.subscriber_id == self.poison for e in emails):
            raise UnicodeEncodeError("ascii", "ü", 0, 1, "cannot encode this one")
        return super().send(emails)


def test_a_message_the_mailer_chokes_on_fails_alone(tmp_path, local_settings) -> None:
    container = _container(tmp_path, local_settings, RecordingMailer())
    try:
        people = add_audience(container, 120, make=lambda i: {"attributes": {"divisor": 5}})
        mailer = ChokingMailer(people[7].id)
        container.__dict__["send"] = SendService(
            container.ledger, container.suppressions, mailer, container.outbox, container.clock,
            campaign_gate=container.campaign_gate,
        )  # fmt: skip
        service = container.campaign_service
        campaign = service.create({"name": "Choke", "template": "poison", "id": "choke"})
        service.send_now(campaign.id)
        Pipeline(container).drain()

        delivery = service.show(campaign.id)["delivery"]
        assert delivery["outcomes"] == {"sent": 119, "permanent": 1}
        assert "UnicodeEncodeError" in delivery["reasons"][people[7].id]
        assert len(mailer.sent) == 119
    finally:
        bootstrap.install(None)


def test_a_batch_whose_template_is_missing_is_dead_lettered_with_the_real_error(
    tmp_path, local_settings
) -> None:
    settings = replace(local_settings, bus_max_attempts=2, bus_min_backoff_s=0.01,
                       bus_max_backoff_s=0.01)  # fmt: skip
    container = Container(settings, overrides={"mailer": RecordingMailer()})
    bootstrap.install(container)
    try:
        request = RenderRequest("c:p:1", "no-such-template", MARKETING, time.time(),
                                [Recipient("s1", "ann@example.com")], campaign_id="c")  # fmt: skip
        container.outbox.publish_json(topology.RENDER_REQUESTS, [request.to_doc()])
        stop = threading.Event()
        host = FunctionsHost()
        worker = BusWorker(container.bus, RENDER, host.deliverer(topology.subscription(RENDER)),
                           poll_interval_s=0.01, stop_event=stop)  # fmt: skip
        worker.start()
        deadline = time.monotonic() + 30
        while not container.dead_letters.counts()[RENDER] and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.stop(timeout=10)

        (letter,) = container.dead_letters.list(RENDER)
        assert "NotFound" in letter.last_error and "no-such-template" in letter.last_error
        assert "handler returned False" not in letter.last_error
        assert container.held_batches.of_campaign("c") == 1
    finally:
        bootstrap.install(None)
