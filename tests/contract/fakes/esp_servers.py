"""Local HTTP servers that imitate SendGrid v3, Mailgun and SES v2 and check what they receive.

Each server answers like its provider (status codes, error bodies, headers) and, for every
request it accepts, records one `Delivery` per recipient: the message as the provider would
deliver it, with SendGrid substitutions and Mailgun recipient variables applied. That record is
the truth the tests compare against. A request that breaks the provider's contract (wrong
auth, missing fields, too many personalizations, an unfilled placeholder ...) is answered with
the provider's error AND noted in `problems`, which every test expects to stay empty.

Scripted trouble: `script(reply_or_None, ...)` answers the next requests in turn (None: as
usual), `fail_next(reply, times)` is the same for one reply; either applies only after the
request passed validation, so its shape is still checked. `storm(fraction, requests)` answers
a seeded-random `fraction` of the next `requests` requests with 429.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import json
import random
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class Delivery:
    """One message as the provider would deliver it."""

    recipient: str
    subject: str
    html: str
    text: str
    headers: dict[str, str]
    args: dict[str, str]  # custom_args / v: variables / message tags
    raw: bytes = b""
    provider_id: str = ""

    def header(self, name: str) -> str:
        """A header's value, whatever the case of its name."""
        (value,) = [v for k, v in self.headers.items() if k.lower() == name.lower()]
        return value


@dataclass
class Reply:
    status: int
    body: Any = None  # dict/list -> JSON, str/bytes as they are
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return b"" if self.body is None else json.dumps(self.body).encode()


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int]  # the client's address: one per pooled connection


class Rejected(Exception):
    """The request breaks the provider's contract: answer `reply`."""

    def __init__(self, reply: Reply, problem: str | None = None) -> None:
        super().__init__(problem or str(reply.body))
        self.reply = reply
        self.problem = problem


class FakeEspServer:
    """A provider imitation on 127.0.0.1, on a port the OS picks."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.replies: list[Reply] = []  # what each request was answered, in order
        self.deliveries: list[Delivery] = []
        self.problems: list[str] = []
        self._forced: list[Reply | None] = []
        self._storm: tuple[float, int, str] | None = None
        self._random = random.Random(7)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- scripting -----------------------------------------------------------------------
    def script(self, *replies: Reply | None) -> None:
        with self._lock:
            self._forced += replies

    def fail_next(self, reply: Reply, times: int = 1) -> None:
        self.script(*[reply] * times)

    def storm(self, fraction: float, requests: int, retry_after: str = "1") -> None:
        with self._lock:
            self._storm = (fraction, requests, retry_after)

    def throttle_reply(self, retry_after: str) -> Reply:
        return Reply(429, {"message": "too many requests"}, {"Retry-After": retry_after})

    # --- what was received ---------------------------------------------------------------
    def delivered_to(self) -> list[str]:
        return [d.recipient for d in self.deliveries]

    def connections(self) -> int:
        return len({r.peer for r in self.requests})

    def delivery(self, recipient: str) -> Delivery:
        (found,) = [d for d in self.deliveries if d.recipient == recipient]
        return found

    # --- the server ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[FakeEspServer]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so clients can pool connections
            wbufsize = 1 << 16  # the answer leaves in one write (no delayed-ACK stalls)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                request = Request("POST", self.path, dict(self.headers), body, self.client_address)
                reply = fake._answer(request)
                answer = reply.encoded()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()

    def _answer(self, request: Request) -> Reply:
        with self._lock:  # one request at a time: the record stays consistent
            self.requests.append(request)
            reply = self._decide(request)
            self.replies.append(reply)
            return reply

    def _decide(self, request: Request) -> Reply:
        try:
            accepted = self.validate(request)
        except Rejected as rejected:
            if rejected.problem:
                self.problems.append(rejected.problem)
            return rejected.reply
        trouble = self._trouble()
        if trouble is not None:
            return trouble
        provider_id = uuid.uuid4().hex
        for delivery in accepted:
            delivery.provider_id = provider_id
        self.deliveries += accepted
        return self.accepted_reply(provider_id)

    def _trouble(self) -> Reply | None:
        if self._forced:
            return self._forced.pop(0)
        if self._storm is not None:
            fraction, left, retry_after = self._storm
            self._storm = (fraction, left - 1, retry_after) if left > 1 else None
            if self._random.random() < fraction:
                return self.throttle_reply(retry_after)
        return None

    # --- per provider --------------------------------------------------------------------
    def validate(self, request: Request) -> list[Delivery]:
        """The deliveries this request asks for; raises Rejected when it breaks the contract."""
        raise NotImplementedError

    def accepted_reply(self, provider_id: str) -> Reply:
        raise NotImplementedError


def _problem(
    status: int, body: Any, problem: str, headers: dict[str, str] | None = None
) -> Rejected:
    return Rejected(Reply(status, body, headers or {}), problem)


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n")  # CRLF is how mail travels; the content had LF


def parse_raw(raw: bytes) -> dict[str, Any]:
    """Subject, text, html and headers of a raw MIME message (bodies with LF line ends)."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    return {
        "recipient": str(message["To"]),
        "subject": str(message["Subject"]),
        "text": _lines(text_part.get_content()) if text_part else "",
        "html": _lines(html_part.get_content()) if html_part else "",
        "headers": {k: str(v) for k, v in message.items()},
    }


# --- SendGrid v3 -----------------------------------------------------------------------------
SENDGRID_RESERVED_HEADERS = {
    "x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
    "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc",
}  # fmt: skip


class FakeSendGrid(FakeEspServer):
    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self.personalization_counts: list[int] = []

    def throttle_reply(self, retry_after: str) -> Reply:
        body = {"errors": [{"field": None, "message": "too many requests"}]}
        return Reply(429, body, {"Retry-After": retry_after, "X-RateLimit-Remaining": "0"})

    def accepted_reply(self, provider_id: str) -> Reply:
        return Reply(202, None, {"X-Message-Id": provider_id})

    def validate(self, request: Request) -> list[Delivery]:
        if request.path != "/v3/mail/send":
            raise _problem(404, {"errors": [{"message": "not found"}]}, f"path {request.path}")
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            raise Rejected(Reply(401, {"errors": [{"field": None, "message": "bad key"}]}))
        try:
            body = json.loads(request.body)
        except ValueError:
            raise _problem(400, {"errors": [{"message": "not JSON"}]}, "body is not JSON") from None
        self._check_shape(body)
        personalizations = body["personalizations"]
        self.personalization_counts.append(len(personalizations))
        bad = [
            {
                "field": f"personalizations.{i}.to.0.email",
                "message": "Does not contain a valid address.",
            }
            for i, p in enumerate(personalizations)
            if not _ADDRESS.match(p["to"][0]["email"])
        ]
        if bad:
            raise Rejected(Reply(400, {"errors": bad}))
        return [self._deliver(body, p) for p in personalizations]

    def _check_shape(self, body: dict[str, Any]) -> None:
        def fail(problem: str) -> Rejected:
            return _problem(400, {"errors": [{"field": None, "message": problem}]}, problem)

        if not body.get("from", {}).get("email"):
            raise fail("from.email is required")
        personalizations = body.get("personalizations") or []
        if not 1 <= len(personalizations) <= 1000:
            raise fail(f"{len(personalizations)} personalizations; 1..1000 allowed")
        content = body.get("content") or []
        if not content or any(not c.get("value") for c in content):
            raise fail("content values must be non-empty")
        types = [c["type"] for c in content]
        if "text/plain" in types and types[0] != "text/plain":
            raise fail("text/plain must come first")
        for i, p in enumerate(personalizations):
            self._check_personalization(i, p, body, fail)

    def _check_personalization(
        self, i: int, p: dict[str, Any], body: dict[str, Any], fail: Any
    ) -> None:
        if len(p.get("to") or []) != 1 or not p["to"][0].get("email"):
            raise fail(f"personalizations.{i}.to must hold one address")
        if not (p.get("subject") or body.get("subject")):
            raise fail(f"personalizations.{i} has no subject")
        for name in ("headers", "custom_args", "substitutions"):
            values = p.get(name, {})
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
                raise fail(f"personalizations.{i}.{name} must map strings to strings")
        reserved = {h.lower() for h in p.get("headers", {})} & SENDGRID_RESERVED_HEADERS
        if reserved:
            raise fail(f"personalizations.{i}.headers: reserved {reserved}")
        size = sum(len(k.encode()) + len(v.encode()) for k, v in p.get("substitutions", {}).items())
        if size > 10_000:
            raise fail(f"personalizations.{i}.substitutions: {size} bytes > 10,000")

    def _deliver(self, body: dict[str, Any], p: dict[str, Any]) -> Delivery:
        substitutions = p.get("substitutions", {})

        def fill(text: str) -> str:
            for key, value in substitutions.items():
                text = text.replace(key, value)
            return text

        content = {c["type"]: c["value"] for c in body["content"]}
        return Delivery(
            recipient=p["to"][0]["email"],
            subject=fill(p.get("subject") or body["subject"]),
            html=fill(content.get("text/html", "")),
            text=fill(content.get("text/plain", "")),
            headers=dict(p.get("headers", {})),
            args=dict(p.get("custom_args", {})),
        )


# --- Mailgun ---------------------------------------------------------------------------------
_RECIPIENT_VAR = re.compile(r"%recipient\.([^%]+)%")


class FakeMailgun(FakeEspServer):
    def __init__(self, api_key: str, domain: str) -> None:
        super().__init__()
        self.api_key = api_key
        self.domain = domain
        self.batch_sizes: list[int] = []

    def accepted_reply(self, provider_id: str) -> Reply:
        return Reply(200, {"id": f"<{provider_id}@{self.domain}>", "message": "Queued. Thank you."})

    def validate(self, request: Request) -> list[Delivery]:
        expected = "Basic " + base64.b64encode(f"api:{self.api_key}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            raise Rejected(Reply(401, "Forbidden"))
        prefix = f"/v3/{self.domain}/"
        if not request.path.startswith(prefix):
            raise Rejected(Reply(404, {"message": "Domain not found"}))
        endpoint = request.path[len(prefix) :]
        if endpoint == "messages":
            return self._batch(request)
        if endpoint == "messages.mime":
            return self._mime(request)
        raise _problem(404, {"message": "not found"}, f"endpoint {endpoint}")

    def _batch(self, request: Request) -> list[Delivery]:
        if not request.headers.get("Content-Type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            raise _problem(400, {"message": "form expected"}, "messages: not form-encoded")
        fields = parse_qsl(request.body.decode(), keep_blank_values=True, strict_parsing=True)
        single = {k: v for k, v in fields}
        recipients = [v for k, v in fields if k == "to"]
        self._check_batch(single, recipients)
        variables = json.loads(single.get("recipient-variables") or "{}")
        if len(recipients) > 1 and set(variables) != set(recipients):
            problem = "batch without recipient-variables for every recipient: everyone sees all"
            raise _problem(400, {"message": problem}, problem)
        if any(not _ADDRESS.match(r) for r in recipients):
            raise Rejected(Reply(400, {"message": "'to' parameter is not a valid address."}))
        self.batch_sizes.append(len(recipients))
        return [self._personalized(single, r, variables.get(r, {})) for r in recipients]

    def _check_batch(self, single: dict[str, str], recipients: list[str]) -> None:
        if not single.get("from") or not recipients:
            raise _problem(400, {"message": "from and to are required"}, "missing from/to")
        if len(recipients) > 1000:
            raise _problem(400, {"message": "too many recipients"}, f"{len(recipients)} recipients")
        if not (single.get("text") or single.get("html")):
            raise _problem(400, {"message": "need text or html"}, "no text or html")

    def _personalized(
        self, single: dict[str, str], recipient: str, variables: dict[str, Any]
    ) -> Delivery:
        def fill(text: str) -> str:
            def value(match: re.Match[str]) -> str:
                if match.group(1) not in variables:
                    self.problems.append(f"{recipient}: no recipient variable {match.group(1)!r}")
                return str(variables.get(match.group(1), match.group(0)))

            return _RECIPIENT_VAR.sub(value, text)

        return Delivery(
            recipient=recipient,
            subject=fill(single.get("subject", "")),
            html=fill(single.get("html", "")),
            text=fill(single.get("text", "")),
            headers={k[2:]: fill(v) for k, v in single.items() if k.startswith("h:")},
            args={k[2:]: fill(v) for k, v in single.items() if k.startswith("v:")},
        )

    def _mime(self, request: Request) -> list[Delivery]:
        content_type = request.headers.get("Content-Type", "")
        if not content_type.startswith("multipart/form-data"):
            raise _problem(400, {"message": "multipart expected"}, "messages.mime: not multipart")
        parts = multipart_fields(content_type, request.body)
        raw = parts.pop("message", b"")
        fields = {name: value.decode() for name, value in parts.items()}
        if not raw or not fields.get("to"):
            raise _problem(400, {"message": "to and message required"}, "mime without to/message")
        if not _ADDRESS.match(fields["to"]):
            raise Rejected(Reply(400, {"message": "'to' parameter is not a valid address."}))
        parsed = parse_raw(raw)
        self.batch_sizes.append(1)
        return [
            Delivery(
                recipient=fields["to"],
                subject=parsed["subject"],
                html=parsed["html"],
                text=parsed["text"],
                headers=parsed["headers"],
                args={k[2:]: v for k, v in fields.items() if k.startswith("v:")},
                raw=raw,
            )
        ]


def multipart_fields(content_type: str, body: bytes) -> dict[str, bytes]:
    """name -> bytes of a multipart/form-data body, byte for byte (files included)."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    assert boundary is not None, content_type
    fields = {}
    for chunk in body.split(b"--" + boundary.group(1).encode())[1:-1]:
        head, _, value = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        assert name is not None, head
        fields[name.group(1).decode()] = value.removesuffix(b"\r\n")
    return fields


# --- SES v2 ----------------------------------------------------------------------------------
_TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class FakeSes(FakeEspServer):
    def __init__(self, access_key_id: str, region: str) -> None:
        super().__init__()
        self.access_key_id = access_key_id
        self.region = region

    @staticmethod
    def error(status: int, code: str, message: str) -> Reply:
        return Reply(status, {"message": message}, {"x-amzn-ErrorType": f"{code}:"})

    def throttle_reply(self, retry_after: str) -> Reply:
        return self.error(429, "TooManyRequestsException", "Maximum sending rate exceeded.")

    def accepted_reply(self, provider_id: str) -> Reply:
        return Reply(200, {"MessageId": provider_id}, {"Content-Type": "application/json"})

    def validate(self, request: Request) -> list[Delivery]:
        if request.path != "/v2/email/outbound-emails":
            raise _problem(404, {"message": "not found"}, f"path {request.path}")
        self._check_signature(request.headers)
        body = json.loads(request.body)
        try:
            raw = base64.b64decode(body["Content"]["Raw"]["Data"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            raise _problem(400, {"message": "Content.Raw.Data"}, "no raw content") from None
        tags = body.get("EmailTags", [])
        bad_tags = [t for t in tags if not (_TAG.match(t["Name"]) and _TAG.match(t["Value"]))]
        if bad_tags:
            raise _problem(400, {"message": "invalid tag"}, f"invalid tags {bad_tags}")
        recipients = body.get("Destination", {}).get("ToAddresses", [])
        if len(recipients) != 1:
            raise _problem(400, {"message": "one recipient"}, f"recipients {recipients}")
        if not _ADDRESS.match(recipients[0]):
            raise Rejected(self.error(400, "MessageRejected", "Illegal address"))
        parsed = parse_raw(raw)
        return [
            Delivery(
                recipient=recipients[0],
                subject=parsed["subject"],
                html=parsed["html"],
                text=parsed["text"],
                headers=parsed["headers"],
                args={t["Name"]: t["Value"] for t in tags},
                raw=raw,
            )
        ]

    def _check_signature(self, headers: dict[str, str]) -> None:
        """SigV4: the header's shape and credential scope (key id, region, service)."""
        auth = headers.get("Authorization", "")
        scope = re.match(
            r"^AWS4-HMAC-SHA256 Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request, "
            r"SignedHeaders=([a-z0-9;-]+), Signature=[0-9a-f]{64}$",
            auth,
        )
        if scope is None or not headers.get("X-Amz-Date"):
            raise _problem(403, {"message": "missing signature"}, f"not SigV4: {auth[:60]!r}")
        key_id, region, service, signed = scope.groups()
        if key_id != self.access_key_id:
            raise Rejected(self.error(403, "UnrecognizedClientException", "bad key"))
        if (region, service) != (self.region, "ses") or "host" not in signed.split(";"):
            raise _problem(403, {"message": "scope"}, f"scope {region}/{service}, signed {signed}")
