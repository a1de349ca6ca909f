"""Signing as the providers do it, with keys the tests make (importable as `webhook_signing`).

SendGrid: an ECDSA P-256 key pair; Mailgun: an HMAC key; SNS: an RSA key and a self-signed
certificate served by FakeSnsHttp, a fake of the network behind the SnsHttp port (the URL
checks still run on real-looking URLs).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from shared.adapters.esp.ses_webhook import canonical_string

TOPIC = "arn:aws:sns:eu-west-1:123456789012:mailpipe-ses-feedback"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
SUBSCRIBE_URL = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC


class SendGridSigner:
    def __init__(self) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        der = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key_base64 = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: float) -> dict[str, str]:
        stamp = str(int(timestamp))
        signature = self.private_key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "Content-Type": "application/json",
        }


def mailgun_body(key: str, event_data: dict[str, Any], timestamp: float, token: str) -> bytes:
    stamp = str(int(timestamp))
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    payload = {
        "signature": {"timestamp": stamp, "token": token, "signature": signature},
        "event-data": event_data,
    }
    return json.dumps(payload).encode()


class SnsSigner:
    """An RSA key with a certificate like SNS's (CN=sns.amazonaws.com), valid around `now`."""

    def __init__(self, now: float, valid_days: int = 30) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        start = dt.datetime.fromtimestamp(now, dt.UTC) - dt.timedelta(days=1)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=valid_days))
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, envelope: dict[str, Any], version: str = "2") -> dict[str, Any]:
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signed = {**envelope, "SignatureVersion": version, "SigningCertURL": CERT_URL}
        signature = self.key.sign(canonical_string(signed), padding.PKCS1v15(), algorithm)
        return {**signed, "Signature": base64.b64encode(signature).decode()}


class FakeSnsHttp:
    """The SnsHttp port without a network: serves one certificate, records every request."""

    def __init__(self, pem: bytes) -> None:
        self.pem = pem
        self.fetched: list[str] = []
        self.confirmed: list[str] = []

    def fetch_certificate(self, url: str) -> bytes:
        self.fetched.append(url)
        return self.pem

    def confirm_subscription(self, url: str) -> None:
        self.confirmed.append(url)


def iso(ts: float) -> str:
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def sns_notification(message: dict[str, Any], now: float, message_id: str = "sns-1") -> dict:
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Message": json.dumps(message),
        "Timestamp": iso(now),
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
    }


def ses_bounce(
    email: str, bounce_type: str, status: str, diagnostic: str, now: float, **mail: Any
) -> dict:
    return {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": email, "action": "failed", "status": status,
                 "diagnosticCode": diagnostic}
            ],
            "timestamp": iso(now),
            "feedbackId": "feedback-1",
        },
        "mail": {"timestamp": iso(now - 60), "messageId": "ses-msg-1",
                 "destination": [email], **mail},
    }  # fmt: skip
