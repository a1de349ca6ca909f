"""DKIM: messages signed by the mailers verify with dkimpy against the key published by a real
local DNS server (dnslib), asked through dnspython; tampering breaks the signature; a message
sent through the SMTP mailer to a real SMTP server (aiosmtpd) verifies as it arrived; SES and
Mailgun's raw-MIME sends go signed; `mailpipe dkim keygen` prints a key and a record that work.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim
import pytest
from click.testing import CliRunner
from contract.fakes.emails import campaign_emails
from contract.fakes.esp_servers import FakeMailgun, FakeSes
from contract.fakes.smtp_server import smtp_server
from dns_zone import dns_server

from shared.adapters.dns.dnspython_lookup import DnspythonLookup
from shared.adapters.esp.dkim_signer import DkimSigner, generate_key, load_key
from shared.adapters.esp.providers import mailer_from_settings
from shared.cli.cmd_dkim import dkim as dkim_cli
from shared.domain.errors import ConfigurationError
from shared.settings import Settings

DOMAIN = "mailpipe.test"
SELECTOR = "mp2026"
KEY_NAME = f"{SELECTOR}._domainkey.{DOMAIN}"
REQUIRED = ["from", "to", "subject", "date", "message-id", "mime-version", "content-type",
            "list-unsubscribe", "list-unsubscribe-post"]  # fmt: skip


@pytest.fixture(scope="module", params=["rsa", "ed25519"])
def key(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(PEM, TXT record) of a fresh key of each type."""
    pem, loaded = generate_key(request.param)
    return pem, loaded.txt_record()


@pytest.fixture
def verify(key: tuple[str, str]) -> Iterator[Callable[[bytes], bool]]:
    """dkimpy's verify, its key looked up over DNS from a local server publishing `key`."""
    with dns_server({(KEY_NAME, "TXT"): [key[1]]}) as (where, resolver):
        lookup = DnspythonLookup(where)

        def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
            return "".join(lookup.txt(name.decode().rstrip("."))).encode()

        def check(message: bytes) -> bool:
            crlf = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # as on the wire
            return bool(dkim.verify(crlf, dnsfunc=dnsfunc))

        yield check
        assert (KEY_NAME, "TXT") in resolver.questions, "the key came from the DNS server"


def settings(pem: str, **values: object) -> Settings:
    return Settings(
        sender=f"Mailpipe News <news@{DOMAIN}>",
        dkim_private_key=pem,
        dkim_selector=SELECTOR,
        **values,  # type: ignore[arg-type]
    )


def signed_header(message: bytes) -> dict[str, str]:
    header = re.search(rb"DKIM-Signature:(.*?)\r?\n(?! )", message, re.S)
    assert header, "no DKIM-Signature"
    text = " ".join(header.group(1).decode().split())
    return {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in text.split(";"))}


def test_signed_messages_verify_and_sign_what_receivers_show(
    key: tuple[str, str], verify: Callable[[bytes], bool]
) -> None:
    signer = DkimSigner(load_key(key[0]), DOMAIN, SELECTOR)
    (email,) = campaign_emails(["Zoë"])
    signed = signer.sign(email.raw)

    assert verify(signed)
    assert signed.endswith(email.raw), "the message itself is untouched"
    tags = signed_header(signed)
    assert tags["c"] == "relaxed/relaxed"
    assert (tags["d"], tags["s"]) == (DOMAIN, SELECTOR)
    assert set(REQUIRED) <= {h.strip() for h in tags["h"].split(":")}


def test_tampering_breaks_the_signature(
    key: tuple[str, str], verify: Callable[[bytes], bool]
) -> None:
    signer = DkimSigner(load_key(key[0]), DOMAIN, SELECTOR)
    (email,) = campaign_emails(["Ann"])
    signed = signer.sign(email.raw)
    assert verify(signed)
    subject = signed.replace(b"Subject: ", b"Subject: Re: ", 1)
    body = signed.replace(b"Ann", b"Bob")
    second_from = signed.replace(b"\r\nTo: ", b"\r\nFrom: ceo@mailpipe.test\r\nTo: ", 1)
    unsubscribe = signed.replace(b"List-Unsubscribe: <", b"List-Unsubscribe: <https://evil/", 1)
    for tampered in (subject, body, second_from, unsubscribe):
        assert tampered != signed
        assert not verify(tampered)


def test_a_message_sent_over_smtp_arrives_verifiable(
    tmp_path: Path, key: tuple[str, str], verify: Callable[[bytes], bool]
) -> None:
    with smtp_server(tmp_path / "maildir") as (handler, port):
        mailer = mailer_from_settings(settings(key[0], smtp_port=port))
        try:
            emails = campaign_emails(["Ann", "Bob"])
            assert [r.status for r in mailer.send(emails)] == ["sent", "sent"]
        finally:
            mailer.close()
        received = handler.raw_messages()
    assert len(received) == 2
    for message in received:
        assert b"DKIM-Signature:" in message
        assert verify(message)


def test_ses_and_mailgun_raw_mime_goes_signed(
    key: tuple[str, str], verify: Callable[[bytes], bool]
) -> None:
    ses = FakeSes("AKIDTEST", "eu-west-1")
    mailgun = FakeMailgun("key-test", DOMAIN)
    with ses.running(), mailgun.running():
        for fake, values in (
            (ses, {"esp": "ses", "ses_access_key_id": "AKIDTEST", "ses_secret_access_key": "s"}),
            (mailgun, {"esp": "mailgun", "mailgun_api_key": "key-test"}),
        ):
            mailer = mailer_from_settings(settings(key[0], esp_base_url=fake.url, **values))
            try:
                (email,) = campaign_emails(["Ann"])
                assert [r.status for r in mailer.send([email])] == ["sent"]
            finally:
                mailer.close()
            (delivery,) = fake.deliveries
            assert delivery.raw.endswith(email.raw)
            assert verify(delivery.raw)


def test_keygen_prints_a_key_and_the_record_that_verifies(tmp_path: Path) -> None:
    for kind in ("rsa", "ed25519"):
        result = CliRunner().invoke(
            dkim_cli, ["keygen", "--domain", DOMAIN, "--selector", SELECTOR, "--type", kind]
        )
        assert result.exit_code == 0, result.output
        pem = re.search(r"-----BEGIN.*?-----END [A-Z ]+-----", result.output, re.S)
        record = re.search(rf"^{re.escape(KEY_NAME)}\. IN TXT (.*)$", result.output, re.M)
        assert pem and record
        strings = re.findall(r'"([^"]*)"', record.group(1))
        assert all(len(s) <= 255 for s in strings)
        txt = "".join(strings)
        assert f"k={kind}" in txt
        with dns_server({(KEY_NAME, "TXT"): [txt]}) as (where, _):
            lookup = DnspythonLookup(where)
            (email,) = campaign_emails(["Ann"])
            signed = DkimSigner(load_key(pem.group(0)), DOMAIN, SELECTOR).sign(email.raw)
            found = "".join(lookup.txt(KEY_NAME)).encode()
            assert dkim.verify(signed, dnsfunc=lambda name, timeout=5, found=found: found)


def test_unusable_keys_are_refused_without_showing_them() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    short = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ConfigurationError, match="1024-bit") as short_error:
        load_key(short.decode())
    assert "PRIVATE KEY" not in str(short_error.value)
    secret = "not-a-key-but-a-secret-value"
    with pytest.raises(ConfigurationError, match="MAILPIPE_DKIM_PRIVATE_KEY") as garbage:
        load_key(secret)
    assert secret not in str(garbage.value)
    pem, _ = generate_key("ed25519")
    with pytest.raises(ConfigurationError, match="MAILPIPE_DKIM_SELECTOR"):
        mailer_from_settings(Settings(dkim_private_key=pem))
