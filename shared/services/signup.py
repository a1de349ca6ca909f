"""Signup: validate, rate-limit, create the pending subscriber with its consent record, and
publish `signed_up` so preference-sync mails the confirmation link (double opt-in).

The answer never depends on whether the address was known: no way to learn who subscribed.
Abuse limits: per-IP and per-address hourly counters (RateLimited -> 429 with a generic
message), and a honeypot field that humans never see: a bot that fills it gets the same answer
and nothing is stored. The consent record keeps a SHA-256 of the exact consent text the form
showed (CONSENT_TEXTS, by form version), so the proof of consent does not depend on the client.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass

from shared import topology
from shared.domain.addresses import normalize_address
from shared.domain.errors import AlreadyExists, InvalidInput
from shared.domain.mailing_lists import ListCatalog
from shared.domain.messages import SIGNED_UP, SubscriberEvent
from shared.domain.subscriber import CONFIRMED, PENDING, ConsentRecord, Subscriber
from shared.repositories.rate_limits import RateLimits
from shared.repositories.subscribers import Subscribers
from shared.services.publishing import Outbox

MAX_NAME_LENGTH = 100
HOUR = 3600

FORM_VERSION = "signup-form-v1"
# The consent paragraph of each signup form version, exactly as templates/pages/signup.html
# shows it. Change the text only together with a new version, so old records stay provable.
CONSENT_TEXTS = {
    FORM_VERSION: (
        "We will email you our newsletter. You can unsubscribe at any time with one click; "
        "we keep a record of your consent."
    ),
}


def consent_text_hash(form_version: str, posted_text: str) -> str:
    """SHA-256 of the consent text of `form_version`; for forms Mailpipe does not serve
    (embedded elsewhere) the text they posted is all there is to hash."""
    text = CONSENT_TEXTS.get(form_version, posted_text)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class SignupForm:
    email: object
    first_name: object = ""
    lists: object = None  # as posted: a name or a list of names; none means the defaults
    source: str = "form"
    ip: str = ""
    user_agent: str = ""
    form_version: str = ""
    consent_text: str = ""
    honeypot: str = ""  # a field humans never see; bots fill it in


def clean_name(raw: object) -> str:
    if raw is None or raw == "":
        return ""
    if not isinstance(raw, str):
        raise InvalidInput("first_name must be text", field="first_name")
    name = " ".join(raw.split())
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"first_name is longer than {MAX_NAME_LENGTH} characters", "first_name")
    if "<" in name or ">" in name or not name.isprintable():  # NUL is not printable
        raise InvalidInput("first_name contains characters that are not allowed", "first_name")
    return name


class SignupService:
    def __init__(
        self,
        subscribers: Subscribers,
        rate_limits: RateLimits,
        outbox: Outbox,
        clock: Callable[[], float],
        ip_limit_per_hour: int,
        address_limit_per_hour: int,
        lists: ListCatalog,
    ) -> None:
        self._subscribers = subscribers
        self._rate_limits = rate_limits
        self._outbox = outbox
        self._clock = clock
        self._ip_limit = ip_limit_per_hour
        self._address_limit = address_limit_per_hour
        self._lists = lists

    def signup(self, form: SignupForm) -> None:
        """Accept a signup. Raises InvalidInput or RateLimited; otherwise it is durable."""
        if form.honeypot:
            return  # pretend success; a bot learns nothing and nothing is stored
        email = normalize_address(form.email)
        first_name = clean_name(form.first_name)
        lists = self._lists.for_signup(self._lists.choose(form.lists))
        now = self._clock()
        if form.ip:
            ip_key = hashlib.sha256(form.ip.encode()).hexdigest()[:24]
            self._rate_limits.hit(f"signup-ip:{ip_key}", self._ip_limit, HOUR, now)
        subscriber_id = self._subscribers.id_for(email)
        self._rate_limits.hit(f"signup-addr:{subscriber_id}", self._address_limit, HOUR, now)
        consent = ConsentRecord(
            action="signup",
            at=now,
            source=form.source,
            ip=form.ip,
            user_agent=form.user_agent[:300],
            form_version=form.form_version,
            text_hash=consent_text_hash(form.form_version, form.consent_text),
        )
        if self._record(subscriber_id, email, first_name, lists, consent, now):
            # 128 random bits: the confirmation token is derived from this id (preference_sync).
            event = SubscriberEvent(secrets.token_hex(16), SIGNED_UP, subscriber_id, now)
            self._outbox.publish_json(topology.SUBSCRIBER_EVENTS, [asdict(event)])

    def _record(
        self,
        subscriber_id: str,
        email: str,
        first_name: str,
        lists: list[str],
        consent: ConsentRecord,
        now: float,
    ) -> bool:
        """Create or re-open the subscriber; True when a confirmation mail should go out."""
        fresh = Subscriber(
            id=subscriber_id,
            email=email,
            first_name=first_name,
            lists=sorted(set(lists)),
            created_at=now,
            consent=[asdict(consent)],
        )
        try:
            self._subscribers.create(fresh)
            return True
        except AlreadyExists:
            pass

        def reopen(existing: Subscriber) -> bool:
            if existing.status == CONFIRMED:
                return False  # nothing to do, and the answer must not tell
            existing.status = PENDING
            existing.first_name = first_name or existing.first_name
            existing.lists = sorted(set(existing.lists) | set(lists))
            existing.consent.append(asdict(consent))
            return True

        return self._subscribers.change(subscriber_id, reopen).status == PENDING
