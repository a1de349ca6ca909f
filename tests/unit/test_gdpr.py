"""`mailpipe gdpr export|erase EMAIL` over the real local stores (SQLite documents, DuckDB
warehouse, the Maildir), after a real signup -> confirmation mail -> confirm flow."""

from __future__ import annotations

import json
import mailbox
import sys
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from compliance_flow import drain
from support import RecordingMailer

from shared.bootstrap import Container
from shared.cli import main as cli_main
from shared.domain.errors import TransientError
from shared.repositories import suppressions as reasons
from shared.services.gdpr import pseudonym
from shared.services.signup import SignupForm

ANN = "ann@example.com"
BOB = "bob@example.com"


@pytest.fixture
def mailer() -> RecordingMailer:
    return RecordingMailer()


@pytest.fixture
def c(make_container: Callable[..., Container], mailer: RecordingMailer, deliver: Any) -> Container:
    """Ann and Bob signed up (Ann also confirmed); the sink's Maildir holds their mail."""
    container = make_container(overrides={"mailer": mailer})
    for n, email in enumerate((ANN, BOB)):
        container.signup.signup(SignupForm(email, ip=f"192.0.2.{n + 1}", form_version="v1",
                                           consent_text="I agree"))  # fmt: skip
    drain(container, deliver)
    box = mailbox.Maildir(str(container.settings.data_dir / "mail"), create=True)
    for sent in mailer.sent:  # what the local SMTP sink would have stored
        box.add(f"Delivered-To: {sent.recipient}\r\n".encode() + sent.raw)
    box.add(b"Delivered-To: Ann@Example.com\r\nTo: ann@example.com\r\nSubject: hi\r\n\r\nhello\r\n")
    return container


def run(*args: str, input: str | None = None) -> Any:
    cli_main._register_groups()
    return CliRunner().invoke(cli_main.cli, list(args), input=input, catch_exceptions=False)


def export(email: str) -> dict[str, Any]:
    result = run("gdpr", "export", email)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # stderr names the data directory


def test_export_holds_everything_about_the_person(c: Container) -> None:
    data = export("ANN@example.com")
    sid = c.subscribers.id_for(ANN)
    assert data["subscriber_id"] == sid  # the local part's case does not make another person
    assert data["subscriber"]["email"] == ANN
    (consent,) = data["subscriber"]["consent"]
    assert (consent["ip"], consent["form_version"], consent["action"]) == ("192.0.2.1", "v1",
                                                                           "signup")  # fmt: skip
    assert consent["text_hash"] and consent["at"] > 0
    assert data["suppression"] is None
    assert [t["purpose"] for t in data["tokens"]] == ["confirm"]
    assert [e["outcome"] for e in data["send_ledger"]] == ["sent"]
    types = sorted(r["event_type"] for r in data["warehouse_events"])
    assert types == ["send", "signup"]
    assert all(r["subscriber_id"] == sid for r in data["warehouse_events"])
    assert len(data["stored_mail"]) == 2
    assert all(BOB not in m["raw"] for m in data["stored_mail"])


def test_erase_removes_the_person_and_keeps_a_hashed_suppression(c: Container) -> None:
    sid = c.subscribers.id_for(ANN)
    result = run("gdpr", "erase", ANN, "--yes")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report == {
        "tokens_deleted": 1, "ledger_entries_pseudonymized": 1, "warehouse_rows_pseudonymized": 2,
        "stored_mail_deleted": 2, "subscriber_deleted": True, "suppressed_as": reasons.ERASED,
        "trigger_records_deleted": 0, "remainder_entries_erased": 0,
        "snapshot_chunks_erased": 0, "recheck_answers_erased": 0,
    }  # fmt: skip
    after = export(ANN)
    assert after["subscriber"] is None and after["tokens"] == [] and after["send_ledger"] == []
    assert after["warehouse_events"] == [] and after["stored_mail"] == []
    assert after["suppression"]["reason"] == reasons.ERASED
    (suppression_id, suppression), *_ = [
        (k, d) for k, d in c.documents.query("suppressions") if d["reason"] == reasons.ERASED
    ]
    assert ANN not in json.dumps(suppression) and ANN not in suppression_id
    ledger = [doc["outcomes"] for _, doc in c.documents.query("send_ledger")]
    assert any(pseudonym(sid) in o for o in ledger) and not any(sid in o for o in ledger)
    rows = c.warehouse.query("SELECT count(*) AS n FROM events WHERE subscriber_id = $s",
                             {"s": pseudonym(sid)})  # fmt: skip
    assert rows[0]["n"] == 2
    # Bob is untouched.
    assert export(BOB)["subscriber"]["email"] == BOB
    assert len(export(BOB)["stored_mail"]) == 1


def test_erase_twice_is_harmless(c: Container) -> None:
    run("gdpr", "erase", ANN, "--yes")
    report = json.loads(run("gdpr", "erase", ANN, "--yes").stdout)
    assert report["subscriber_deleted"] is False
    assert report["suppressed_as"] == reasons.ERASED


def test_an_erased_address_is_never_mailed_again(
    c: Container, deliver: Any, mailer: RecordingMailer
) -> None:
    run("gdpr", "erase", ANN, "--yes")
    before = len(mailer.sent)
    c.signup.signup(SignupForm(ANN, ip="192.0.2.99"))
    drain(c, deliver)
    assert len(mailer.sent) == before  # the confirmation mail was suppressed at send time
    outcomes = [o for _, d in c.documents.query("send_ledger") for o in d["outcomes"].items()]
    assert (c.subscribers.id_for(ANN), "suppressed") in outcomes


def test_erase_asks_first_and_aborts_on_no(c: Container) -> None:
    result = run("gdpr", "erase", ANN, input="n\n")
    assert result.exit_code != 0
    assert c.subscribers.find(c.subscribers.id_for(ANN)) is not None


def test_a_bad_address_is_a_clear_error(c: Container) -> None:
    cli_main._register_groups()
    result = CliRunner().invoke(cli_main.cli, ["gdpr", "export", "not-an-address"])
    assert result.exit_code != 0
    assert "email is not valid" in str(result.exception) + result.output


class BufferedWarehouse:
    """The Warehouse port as BigQuery behaves while rows sit in its streaming buffer: reads
    work, rewriting them is refused for now (delegates everything else to the real one)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def append(self, events: Any) -> None:
        self.real.append(events)

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        return self.real.query(sql, params)

    def erase_subscriber(self, subscriber_id: str) -> int:
        raise TransientError("UPDATE would affect rows in the streaming buffer")


def test_an_erasure_the_warehouse_refuses_finishes_when_run_again(
    c: Container, make_container: Callable[..., Container], monkeypatch: Any, capsys: Any
) -> None:
    c.__dict__["warehouse"] = BufferedWarehouse(c.warehouse)
    c.__dict__.pop("gdpr", None)
    monkeypatch.setattr(sys, "argv", ["mailpipe", "gdpr", "erase", ANN, "--yes"])
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main()  # the real entry point: errors become a message and exit status 1
    assert exit_info.value.code == 1
    assert "Run the erasure again later" in capsys.readouterr().err
    assert c.subscribers.find(c.subscribers.id_for(ANN)) is None  # the rest is already gone
    assert c.suppressions.reason(ANN) == reasons.ERASED
    make_container(overrides={"mailer": RecordingMailer()})  # later: the buffer has flushed
    report = json.loads(run("gdpr", "erase", ANN, "--yes").stdout)
    assert report["warehouse_rows_pseudonymized"] == 2


def test_trigger_runs_with_event_properties_are_exported_and_erased(c: Container) -> None:
    from shared.repositories.trigger_runs import TriggerRun

    ann_id = c.subscribers.id_for(ANN)
    cart = {"items": [{"name": "Red shoes", "quantity": 1}]}
    run_id = TriggerRun.id_for("cart_abandonment", ann_id, "cart-1")
    run_ = TriggerRun(
        run_id, "cart_abandonment", ann_id, "cart_abandoned", 1.0, "cart-1", 1.0, 2.0, cart
    )
    c.trigger_runs.start(run_)
    [exported] = export(ANN)["trigger_runs"]
    assert exported["properties"] == cart
    result = run("gdpr", "erase", ANN, "--yes")
    assert result.exit_code == 0, result.output
    assert c.trigger_runs.of_subscriber(ann_id) == []
    assert export(ANN)["trigger_runs"] == []
