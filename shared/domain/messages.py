"""The messages that travel between stages on the bus, and their wire encoding.

Every message is JSON; send batches (rendered MIME) are Zstandard-compressed because a batch of
personalized copies of one newsletter compresses ~40x, which keeps each Pub/Sub message far
below the 512 KB event limit and Pub/Sub's per-byte price low. (zlib, which batches published
before used, took ten times the CPU for twice the bytes; such batches still decode.)

The JSON messages of the topics that grow with every email (render requests, analytics
batches) travel Zstandard-compressed too when longer than Pub/Sub's 1,000-byte billing minimum,
with the `encoding` attribute saying so (services/publishing.py picks the topics):
a batch of rows of one campaign compresses ~8x, and Pub/Sub bills every byte twice (publish
and push). `from_json` reads both forms: JSON never starts with Zstandard's magic number.
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

import zstandard

from shared.domain.errors import InvalidInput
from shared.ports import OutgoingEmail

ENCODING_ATTRIBUTE = "encoding"
ZLIB_JSON = "zlib+json"  # send batches published before Zstandard
ZSTD_JSON = "zstd+json"
# Level 1: a batch's near-identical messages compress ~40x even so, at ~6 us per message.
_ZSTD_LEVEL = 1
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# Subscriber event kinds (topic subscriber-events)
SIGNED_UP = "signed_up"
CONFIRMED = "confirmed"
UNSUBSCRIBED = "unsubscribed"
PREFERENCES_CHANGED = "preferences_changed"

# Mail kinds: transactional mail (confirmation) goes to pending subscribers; marketing mail only
# to confirmed ones. Suppression applies to both.
TRANSACTIONAL = "transactional"
MARKETING = "marketing"


# Pub/Sub bills each publish and push at least 1,000 bytes: a smaller message gains nothing
# from compression and stays readable as it is.
COMPRESS_ABOVE_BYTES = 1000
_JSON_ZSTD_LEVEL = 3  # ~2 us per analytics row; level 1 leaves a fifth more bytes
MAX_JSON_MESSAGE_BYTES = 64 * 1024**2  # inflated; far above any message a stage publishes


def to_json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), default=_default).encode()


def wire_json(data: bytes) -> tuple[bytes, dict[str, str]]:
    """JSON bytes as they go on the bus, with the attributes that say how: Zstandard above
    `COMPRESS_ABOVE_BYTES`, as they are otherwise."""
    if len(data) <= COMPRESS_ABOVE_BYTES:
        return data, {}
    packed = zstandard.ZstdCompressor(level=_JSON_ZSTD_LEVEL).compress(data)
    return packed, {ENCODING_ATTRIBUTE: ZSTD_JSON}


def plain_json(data: bytes, what: str) -> bytes:
    """A message's JSON bytes, inflated when it came compressed (see `wire_json`).
    InvalidInput when it is corrupt or would inflate past `MAX_JSON_MESSAGE_BYTES`."""
    if not data.startswith(_ZSTD_MAGIC):
        return data
    try:
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=MAX_JSON_MESSAGE_BYTES)
    except zstandard.ZstdError as exc:
        raise InvalidInput(f"{what}: not a readable compressed message ({exc})") from exc


def _default(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    raise TypeError(f"cannot encode {type(value).__name__}")


def from_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        payload = json.loads(plain_json(data, what))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{what}: body is not JSON ({exc})") from exc
    if not isinstance(payload, dict):
        raise InvalidInput(f"{what}: expected a JSON object")
    return payload


@dataclass(frozen=True)
class SubscriberEvent:
    event_id: str
    kind: str
    subscriber_id: str
    occurred_at: float
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def decode(cls, data: bytes) -> SubscriberEvent:
        raw = from_json(data, "subscriber event")
        try:
            return cls(
                event_id=str(raw["event_id"]),
                kind=str(raw["kind"]),
                subscriber_id=str(raw["subscriber_id"]),
                occurred_at=float(raw["occurred_at"]),
                data=dict(raw.get("data") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"subscriber event: missing or bad field {exc}") from exc


@dataclass(frozen=True)
class Recipient:
    subscriber_id: str
    email: str
    first_name: str = ""
    variables: dict[str, Any] = field(default_factory=dict)
    tracking: bool = True

    def to_doc(self) -> dict[str, Any]:
        """The fields as JSON-ready data: what `asdict` gives, without its deep copy (the
        dicts are shared, so encode the result rather than change it)."""
        return {
            "subscriber_id": self.subscriber_id,
            "email": self.email,
            "first_name": self.first_name,
            "variables": self.variables,
            "tracking": self.tracking,
        }


@dataclass(frozen=True)
class RenderRequest:
    """Render `template` for each recipient; one request is one batch of one campaign."""

    batch_id: str
    template: str
    kind: str
    audience_at: float
    recipients: list[Recipient]
    campaign_id: str | None = None
    variant: str | None = None
    trigger_id: str | None = None
    subject: str | None = None
    sender: str | None = None
    track_opens: bool = True
    track_clicks: bool = True
    context: dict[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        """The fields as JSON-ready data, like `Recipient.to_doc` (no deep copy)."""
        doc = {name: getattr(self, name) for name in _RENDER_REQUEST_FIELDS}
        doc["recipients"] = [r.to_doc() for r in self.recipients]
        return doc

    def encode(self) -> bytes:
        return to_json(self.to_doc())

    @classmethod
    def decode(cls, data: bytes) -> RenderRequest:
        raw = from_json(data, "render request")
        try:
            raw["recipients"] = [Recipient(**r) for r in raw["recipients"]]
            return cls(**raw)
        except (KeyError, TypeError) as exc:
            raise InvalidInput(f"render request: missing or bad field {exc}") from exc


_RENDER_REQUEST_FIELDS = tuple(RenderRequest.__dataclass_fields__)


@dataclass(frozen=True)
class SendBatch:
    """Rendered messages for one batch; the send ledger is keyed by `batch_id`. `failed`:
    recipients of the batch the render stage could not render (subscriber id -> reason), so
    the send stage records their outcome in the same ledger document as everyone else's."""

    batch_id: str
    kind: str
    audience_at: float
    emails: list[OutgoingEmail]
    campaign_id: str | None = None
    variant: str | None = None
    trigger_id: str | None = None
    failed: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        """Zstandard of: a JSON header line (the batch and each message's fields and raw
        length), then the raw MIME messages back to back. The raw bytes skip JSON escaping, and
        the HTML and text parts are not sent twice (mime.html_and_text takes them out of the
        raw)."""
        header = {
            "batch_id": self.batch_id,
            "kind": self.kind,
            "audience_at": self.audience_at,
            "campaign_id": self.campaign_id,
            "variant": self.variant,
            "trigger_id": self.trigger_id,
            "emails": [_email_header(e) for e in self.emails],
        }
        if self.failed:  # absent otherwise: a batch without it reads as before
            header["failed"] = self.failed
        pieces = [to_json(header), b"\n", *(e.raw for e in self.emails)]
        # Fed piece by piece: joining them first would copy megabytes to compress ~40x.
        stream = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compressobj(size=sum(map(len, pieces)))
        return b"".join([*map(stream.compress, pieces), stream.flush()])

    @classmethod
    def decode(cls, data: bytes) -> SendBatch:
        """The batch in `data` (Zstandard, or zlib from before); InvalidInput when it is
        neither or its header does not describe it."""
        try:
            plain = _plain_stream(data)
            header = from_json(plain.readline(), "send batch")
            header["emails"] = _emails(header["emails"], plain)
            return cls(**header)
        except (zstandard.ZstdError, zlib.error) as exc:
            raise InvalidInput(f"send batch: not a compressed batch ({exc})") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"send batch: missing or bad field {exc}") from exc


def _plain_stream(data: bytes) -> BinaryIO:
    """The batch's plain bytes as a stream. Zstandard is read in small pieces rather than
    inflated into one buffer of megabytes, which would cost a page fault per 4 KB."""
    if data.startswith(_ZSTD_MAGIC):
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(data), 1 << 16)
    return io.BytesIO(zlib.decompress(data))


def send_batch_header(data: bytes) -> dict[str, Any]:
    """A send batch's header (its ids and message fields) without reading its messages.
    InvalidInput when `data` is not a send batch."""
    try:
        return from_json(_plain_stream(data).readline(), "send batch")
    except (zstandard.ZstdError, zlib.error) as exc:
        raise InvalidInput(f"send batch: not a compressed batch ({exc})") from exc


def decompress_batch(data: bytes) -> bytes:
    """A send batch's plain bytes, from Zstandard or (batches published before) zlib.
    InvalidInput when `data` is neither (or is corrupt)."""
    try:
        return _plain_stream(data).read()
    except (zstandard.ZstdError, zlib.error) as exc:
        raise InvalidInput(f"send batch: not a compressed batch ({exc})") from exc


_EMAIL_FIELDS = ("message_id", "sender", "recipient", "subject", "headers", "subscriber_id",
                 "campaign_id")  # fmt: skip


def _email_header(email: OutgoingEmail) -> dict[str, Any]:
    fields = {name: getattr(email, name) for name in _EMAIL_FIELDS}
    fields["raw_length"] = len(email.raw)
    return fields


def _emails(headers: list[dict[str, Any]], raws: BinaryIO) -> list[OutgoingEmail]:
    """The messages of a batch, their raw bytes read from `raws` in order; an older batch
    kept each raw message in its JSON header."""
    emails = []
    for fields in headers:
        if "raw" in fields:
            raw = fields.pop("raw").encode("utf-8", "surrogateescape")
        else:
            length = int(fields.pop("raw_length"))
            raw = raws.read(length)
            if len(raw) != length:
                raise ValueError("raw messages are shorter than their header says")
        fields.setdefault("html", "")
        fields.setdefault("text", "")
        emails.append(OutgoingEmail(**fields, raw=raw))
    return emails
