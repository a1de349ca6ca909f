"""The subscriber mirror follows the documents: every change of a subscriber travels the
analytics topic to the warehouse function and lands in `subscribers_raw`, whose latest row per
id is the subscriber's state; an erasure leaves only a tombstone; `mailpipe subscribers
mirror-rebuild` writes the mirror from the document store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from compliance_flow import drain
from support import RecordingMailer

from shared.bootstrap import Container
from shared.cli import main as cli_main
from shared.domain.subscriber import CONFIRMED, Subscriber
from shared.domain.subscriber_mirror import TABLE
from shared.services.audience_sql import LATEST
from shared.services.signup import SignupForm

ANN = "ann@example.com"


@pytest.fixture
def c(make_container: Callable[..., Container]) -> Container:
    return make_container(overrides={"mailer": RecordingMailer()})


def mirror(container: Container) -> dict[str, dict[str, Any]]:
    """The latest mirror row per subscriber id."""
    rows = container.warehouse.query(f"SELECT * FROM ({LATEST}) AS s")
    return {r["subscriber_id"]: r for r in rows}


def raw_rows(container: Container, subscriber_id: str) -> list[dict[str, Any]]:
    return container.warehouse.query(
        f"SELECT * FROM {TABLE} WHERE subscriber_id = $id", {"id": subscriber_id}
    )


def test_each_change_reaches_the_mirror(c: Container, deliver: Any) -> None:
    c.signup.signup(SignupForm(ANN, ip="192.0.2.1", form_version="v1", consent_text="I agree"))
    drain(c, deliver)
    sid = c.subscribers.id_for(ANN)
    assert mirror(c)[sid]["status"] == "pending"
    assert mirror(c)[sid]["email"] == ANN

    c.subscribers.change(sid, lambda s: s.confirm(1.0, _consent()) or True)
    c.subscriber_admin.edit(sid, ["weekly"], ["vip"], {"plan": {"tier": "pro"}})
    drain(c, deliver)
    state = mirror(c)[sid]
    assert (state["status"], list(state["lists"]), list(state["tags"])) == (
        CONFIRMED, ["weekly"], ["vip"],
    )  # fmt: skip
    assert state["attributes"] == '{"plan":{"tier":"pro"}}'

    c.subscriber_admin.suppress(sid, "asked by phone")
    drain(c, deliver)
    assert mirror(c)[sid]["suppressed"]

    c.subscriber_admin.unsubscribe(sid)
    drain(c, deliver)
    assert mirror(c)[sid]["status"] == "unsubscribed"


def test_a_change_of_nothing_mirrored_publishes_nothing(c: Container, deliver: Any) -> None:
    sid = c.subscribers.id_for(ANN)
    c.subscribers.create(Subscriber(sid, ANN, CONFIRMED, confirmed_at=1.0))
    drain(c, deliver)
    c.subscribers.change(sid, lambda s: bool(s.recent_outcomes.append("sent")) or True)
    drain(c, deliver)
    assert len(raw_rows(c, sid)) == 1


def test_an_erasure_leaves_only_a_tombstone(c: Container, deliver: Any) -> None:
    c.signup.signup(SignupForm(ANN, ip="192.0.2.1", form_version="v1", consent_text="I agree"))
    drain(c, deliver)
    sid = c.subscribers.id_for(ANN)
    c.gdpr.erase(ANN)
    drain(c, deliver)
    rows = raw_rows(c, sid)
    assert [r["erased"] for r in rows] == [True]
    assert ANN not in str(rows)
    assert sid not in {r["subscriber_id"] for r in mirror(c).values() if not r["erased"]}


def test_an_import_mirrors_each_commit_in_one_message(c: Container, deliver: Any) -> None:
    people = [Subscriber(f"s{i:031d}", f"p{i}@example.com", CONFIRMED) for i in range(1200)]
    before = c.bus.depths()["warehouse-on-analytics-events"]["ready"]
    c.subscribers.create_many(people)
    assert c.bus.depths()["warehouse-on-analytics-events"]["ready"] - before == 3  # 500+500+200
    drain(c, deliver)
    assert len(mirror(c)) == 1200


def test_mirror_rebuild_writes_every_subscriber_from_the_documents(c: Container) -> None:
    for i in range(7):
        c.subscribers.save(Subscriber(f"s{i:031d}", f"p{i}@example.com", CONFIRMED))
    # Nothing was delivered to the warehouse function: the mirror is empty until rebuilt.
    assert mirror(c) == {}
    cli_main._register_groups()
    result = CliRunner().invoke(cli_main.cli, ["subscribers", "mirror-rebuild"])
    assert result.exit_code == 0, result.output
    assert "7 subscribers mirrored" in result.output
    assert sorted(mirror(c)) == [f"s{i:031d}" for i in range(7)]


def _consent() -> Any:
    from shared.domain.subscriber import ConsentRecord

    return ConsentRecord("confirm", 1.0, "test")
