"""The console behind Identity-Aware Proxy: an identity in IAP's signed header (ES256) counts
only after google-auth verified it against the keys at MAILPIPE_CONSOLE_IAP_CERTS_URL (here a
local HTTP server with a key made for the test), the audience and the expiry; listed addresses
act, others read; a form still needs the CSRF token."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.auth import crypt, jwt

from shared.console.access import ConsoleAccess
from shared.console.app import create_console_app
from shared.console.iap import HEADER, ISSUER, iap_identity

AUDIENCE = "/projects/123/global/backendServices/456"


@pytest.fixture(scope="module")
def iap_keys() -> Iterator[tuple[str, crypt.ES256Signer]]:
    """A key pair; the public key served as IAP serves its keys ({key id: PEM})."""
    private = ec.generate_private_key(ec.SECP256R1())
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, public)
    body = json.dumps({"test-key": pem.decode()}).encode()

    class Keys(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    private_pem = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())  # fmt: skip
    signer = crypt.ES256Signer.from_string(private_pem, "test-key")
    yield f"http://127.0.0.1:{server.server_port}/keys", signer
    server.shutdown()


def assertion(signer, email: str, audience: str = AUDIENCE, issuer: str = ISSUER) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "email": email, "sub": "accounts.google.com:1",
              "iat": now, "exp": now + 600}  # fmt: skip
    return jwt.encode(signer, claims).decode()


@pytest.fixture
def console(make_container, iap_keys):
    certs_url, signer = iap_keys
    container = make_container(console_iap_audience=AUDIENCE, console_iap_certs_url=certs_url,
                               console_admins=("boss@example.com",))  # fmt: skip
    access = ConsoleAccess.from_settings(container.settings)
    app = create_console_app(lambda: container, access, iap=iap_identity(access))
    return app.test_client(), signer


def test_an_admin_listed_by_address_acts_and_others_read(console) -> None:
    client, signer = console
    boss = {HEADER: assertion(signer, "boss@example.com")}
    page = client.get("/campaigns", headers=boss)
    assert page.status_code == 200 and "Sign out (admin)" in page.get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    made = client.post("/campaigns/new", headers=boss, data={"csrf_token": token, "name": "IAP",
                                                             "template": "newsletter"})  # fmt: skip
    assert made.status_code == 303
    assert client.post("/campaigns/new", headers=boss, data={"name": "x"}).status_code == 403

    reader = {HEADER: assertion(signer, "reader@example.com")}
    assert client.get("/deliverability", headers=reader).status_code == 200
    assert client.get("/campaigns", headers=reader).status_code == 403


def test_a_forged_stale_or_foreign_assertion_is_no_identity(console) -> None:
    client, signer = console
    other = crypt.ES256Signer(ec.generate_private_key(ec.SECP256R1()), "test-key")
    for header in (
        assertion(other, "boss@example.com"),  # not IAP's key
        assertion(signer, "boss@example.com", audience="/projects/9/other"),
        assertion(signer, "boss@example.com", issuer="https://example.com"),
        "not-a-jwt",
    ):
        answer = client.get("/campaigns", headers={HEADER: header})
        assert answer.status_code == 302 and "/sign-in" in answer.location
    assert iap_identity(ConsoleAccess("key")) is None  # no audience: no IAP check at all
