"""Signup abuse and consent through the real functions: rate limits, honeypot, identical answers,
IDN normalization, confirmation tokens (>= 128 random bits, single use, expiring), consent."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from compliance_flow import drain
from support import RecordingMailer

from shared import bootstrap
from shared.bootstrap import Container
from shared.domain.subscriber import CONFIRMED, PENDING, Subscriber
from shared.services.mime import html_and_text

JSON_ACCEPT = {"Accept": "application/json"}
HTML_ACCEPT = {"Accept": "text/html"}


@pytest.fixture
def mailer() -> RecordingMailer:
    return RecordingMailer()


@pytest.fixture
def c(make_container: Callable[..., Container], mailer: RecordingMailer) -> Container:
    return make_container(
        overrides={"mailer": mailer}, signup_ip_limit_per_hour=3, signup_address_limit_per_hour=2
    )


@pytest.fixture
def signup(function_client: Callable[[str], Any]) -> Callable[..., Any]:
    client = function_client("signup")

    def post(email: str, ip: str = "198.51.100.7", accept: dict | None = None, **more: str):
        headers = {"X-Forwarded-For": ip, **(accept or JSON_ACCEPT)}
        return client.post("/", data={"email": email, **more}, headers=headers)

    return post


def subscriber_count(c: Container) -> int:
    return sum(len(page) for page in c.subscribers.pages())


def test_a_fourth_signup_from_one_ip_is_429_with_a_generic_message(
    c: Container, signup: Callable[..., Any]
) -> None:
    for n in range(3):
        assert signup(f"person{n}@example.com").status_code == 202
    response = signup("person3@example.com")
    assert response.status_code == 429
    assert response.get_json() == {"error": "too many requests; please try again later"}
    assert c.subscribers.find(c.subscribers.id_for("person3@example.com")) is None
    assert signup("person3@example.com", ip="203.0.113.1").status_code == 202


def test_a_third_signup_of_one_address_is_429_from_any_ip(
    c: Container, signup: Callable[..., Any]
) -> None:
    assert signup("ann@example.com", ip="192.0.2.1").status_code == 202
    assert signup("ann@example.com", ip="192.0.2.2").status_code == 202
    response = signup("ann@example.com", ip="192.0.2.3")
    assert response.status_code == 429
    assert "ann@example.com" not in response.get_data(as_text=True)


def test_the_honeypot_answers_202_and_stores_nothing(
    c: Container, signup: Callable[..., Any]
) -> None:
    real = signup("real@example.com", ip="192.0.2.50")
    bot = signup("bot@example.com", website="http://spam.example")
    assert (bot.status_code, bot.data) == (real.status_code, real.data)
    assert subscriber_count(c) == 1
    assert len(c.documents.query("rate_limits", limit=100)) == 2  # the real signup's ip + address
    assert len(c.bus.pull("preference-sync-on-subscriber-events", 10)) == 1


@pytest.mark.parametrize("accept", [JSON_ACCEPT, HTML_ACCEPT], ids=["json", "html"])
def test_answers_are_byte_identical_for_new_pending_and_confirmed_addresses(
    c: Container, signup: Callable[..., Any], accept: dict
) -> None:
    confirmed = "confirmed@example.com"
    c.subscribers.save(Subscriber(c.subscribers.id_for(confirmed), confirmed, status=CONFIRMED))
    signup("pending@example.com", ip="192.0.2.9", accept=accept)
    answers = [
        signup(email, ip=f"192.0.2.{20 + n}", accept=accept)
        for n, email in enumerate(["new@example.com", "pending@example.com", confirmed])
    ]
    assert {(a.status_code, a.data, a.mimetype) for a in answers} == {
        (answers[0].status_code, answers[0].data, answers[0].mimetype)
    }
    assert answers[0].status_code == 202
    assert c.subscribers.get(c.subscribers.id_for(confirmed)).status == CONFIRMED


def test_idn_addresses_are_normalized_to_one_subscriber(
    c: Container, signup: Callable[..., Any]
) -> None:
    assert signup("user@Bücher.Example", ip="192.0.2.60").status_code == 202
    assert signup("USER@xn--bcher-kva.example", ip="192.0.2.61").status_code == 202
    (subscriber,) = next(c.subscribers.pages())
    assert subscriber.email == "user@bücher.example"
    assert subscriber.status == PENDING


@pytest.mark.parametrize(
    "email", ["not-an-address", "a@b", "ann@exa mple.com", "x" * 250 + "@example.com", ""]
)
def test_invalid_addresses_are_400_and_store_nothing(
    c: Container, signup: Callable[..., Any], email: str
) -> None:
    response = signup(email)
    assert response.status_code == 400
    assert response.get_json()["field"] == "email"
    assert subscriber_count(c) == 0


def test_consent_records_the_hash_of_the_consent_text_the_form_showed(
    c: Container, function_client: Callable[[str], Any], signup: Callable[..., Any]
) -> None:
    page = function_client("signup").get("/", headers=HTML_ACCEPT).get_data(as_text=True)
    shown = html.unescape(re.search(r'<p [^>]*id="consent">(.*?)</p>', page, re.S).group(1))
    version = re.search(r'name="form_version" value="([^"]+)"', page).group(1)
    signup("ann@example.com", ip="192.0.2.70", form_version=version,
           consent_text="a client cannot rewrite what was shown")  # fmt: skip
    (record,) = c.subscribers.get(c.subscribers.id_for("ann@example.com")).consent
    assert record["text_hash"] == hashlib.sha256(shown.encode()).hexdigest()
    assert (record["form_version"], record["ip"], record["action"]) == (
        version, "192.0.2.70", "signup")  # fmt: skip
    assert record["at"] > 0 and record["source"] == "form"


# --- confirmation tokens -------------------------------------------------------------------


def confirmation_token(c: Container, deliver: Any, mailer: RecordingMailer, email: str) -> str:
    drain(c, deliver)
    (mail,) = [m for m in mailer.sent if m.recipient == email]
    text = html_and_text(mail)[1]
    return re.search(r"/confirm/\?token=([A-Za-z0-9_\-%]+)", text).group(1)


def test_confirmation_tokens_are_long_random_and_single_use(
    c: Container, signup: Callable[..., Any], deliver: Any, mailer: RecordingMailer,
    function_client: Callable[[str], Any],
) -> None:  # fmt: skip
    signup("ann@example.com", ip="192.0.2.80")
    signup("bob@example.com", ip="192.0.2.81")
    token = confirmation_token(c, deliver, mailer, "ann@example.com")
    other = confirmation_token(c, deliver, mailer, "bob@example.com")
    assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) * 8 >= 128
    assert token != other
    confirm = function_client("confirm")
    assert confirm.get(f"/?token={token}").status_code == 200
    assert c.subscribers.get(c.subscribers.id_for("ann@example.com")).status == CONFIRMED
    again = confirm.get(f"/?token={token}")
    assert again.status_code == 404
    assert "already used" in again.get_json()["error"]
    assert confirm.get(f"/?token={token[:-1]}A").status_code == 404


def test_confirmation_tokens_expire(
    c: Container, signup: Callable[..., Any], deliver: Any, mailer: RecordingMailer,
    function_client: Callable[[str], Any], make_container: Callable[..., Container],
) -> None:  # fmt: skip
    signup("ann@example.com", ip="192.0.2.90")
    token = confirmation_token(c, deliver, mailer, "ann@example.com")
    later = make_container()
    later.clock = lambda: time.time() + (c.settings.confirmation_ttl_hours + 1) * 3600
    bootstrap.install(later)
    response = function_client("confirm").get(f"/?token={token}")
    assert response.status_code == 404
    assert "expired" in response.get_json()["error"]
    assert later.subscribers.get(later.subscribers.id_for("ann@example.com")).status == PENDING
