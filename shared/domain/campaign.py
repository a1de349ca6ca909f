"""Campaigns: the model, its state machine, and the dispatch bookkeeping it carries.

    draft ──schedule──► scheduled ──(sweep, when due)──┐
      └──────────────send──────────────────────────────┴──► sending ──(last page)──► sent
                                                 A/B: test phase │          ▲
                                                  dispatched     ▼          │ remainder
                                                              testing ──(window over, or
                                                                         pick-winner)
    pause:  scheduled | sending | testing | sent -> paused;  resume: back where it was
    cancel: any state but cancelled -> cancelled (undelivered batches are skipped)

"sent" means every batch has been dispatched (handed to render and send); how many messages
have been delivered is the send ledger's business. Pausing a sent campaign therefore still
holds back the batches waiting in the queue.

Dispatch walks the audience in pages, phase by phase (`all`, or `test` then `remainder` for
A/B tests). Its position lives in `PhaseProgress` on the campaign document: the page number,
the cursor (last subscriber id of the previous page) and the planned end (last id of the
current page, recorded before the page is published so a replay after a crash publishes exactly
the same subscribers under the same batch id). A lease lets only one dispatch invocation work on
a phase at a time, and a token names the one valid continuation message.

An A/B campaign reads its audience once: the test phase stashes each page's remainder members
(`remainder_stashed`), and the remainder phase pages through that stash instead of the
subscribers. Campaigns started before the stash existed leave the flag false and read the
audience again.

Campaigns started since `sized_batches` size their batches by what each group of a page is
expected to hold: an A/B test phase takes pages of several snapshot chunks, so that each
variant's share fills a batch (shared/services/audience.py `chunks_per_page`), where earlier
campaigns published a few dozen recipients per batch; their replays keep the old sizes.

Campaigns started with an audience snapshot (`audience_snapshot`, the default since the
subscriber mirror exists) select their audience once by SQL in the warehouse and walk its chunks
in every phase (shared/services/audience_snapshot.py); they stash nothing. Cursors are then chunk
ids. Campaigns started before keep the route they started on.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from shared.domain.ab_test import AbTest
from shared.domain.errors import Conflict, InvalidInput
from shared.domain.segment import Segment

DRAFT, SCHEDULED, SENDING, TESTING, SENT = "draft", "scheduled", "sending", "testing", "sent"
PAUSED, CANCELLED = "paused", "cancelled"
STATUSES = (DRAFT, SCHEDULED, SENDING, TESTING, SENT, PAUSED, CANCELLED)
ACTIVE = (SCHEDULED, SENDING, TESTING)  # what the sweep looks at
PAUSABLE = (SCHEDULED, SENDING, TESTING, SENT)

PHASE_ALL, PHASE_TEST, PHASE_REMAINDER, PHASE_HOLDOUT = "all", "test", "remainder", "holdout"

SEND, PARK, SKIP = "send", "park", "skip"  # what the send stage does with a batch

CAMPAIGN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_NAME = 200
MAX_SUBJECT = 300
MAX_CONTEXT_BYTES = 16_000
# Keys the renderer sets per recipient; a campaign variable of the same name would be ignored.
RESERVED_CONTEXT = frozenset(
    {"first_name", "email", "attributes", "unsubscribe_url", "preferences_url", "campaign_id",
     "variant", "subject"}
)  # fmt: skip


def gate_decision(status: str | None) -> str:
    """What the send stage does with a batch of a campaign in `status`."""
    if status == PAUSED:
        return PARK
    if status == CANCELLED:
        return SKIP
    return SEND


def batch_id(campaign_id: str, phase: str, page: int, variant: str | None = None) -> str:
    """Deterministic: a re-dispatch of the same page republishes the same id."""
    base = f"{campaign_id}:{phase}:{page:06d}"
    return f"{base}:{variant}" if variant else base


def phase_of(batch: str) -> str | None:
    """The phase named in a campaign batch id (None for other batches)."""
    parts = batch.split(":")
    return parts[1] if len(parts) >= 3 else None


def variant_of(batch: str) -> str | None:
    """The variant named in a test or resend batch id (`C:test:000001:B`, maybe split `.1`)."""
    parts = batch.split(":")
    return parts[3].split(".")[0] if len(parts) >= 4 else None


def campaign_id_from_name(name: str, suffix: str) -> str:
    """A readable id: the name as a slug plus a short random suffix."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:40].strip("-")
    return f"{slug or 'campaign'}-{suffix}"


@dataclass
class PhaseProgress:
    """How far dispatch got in one phase (see the module docstring)."""

    page: int = 1
    cursor: str | None = None
    planned_end: str | None = None
    done: bool = False
    token: str = ""
    lease_owner: str = ""
    lease_until: float = 0.0
    started_at: float = 0.0
    updated_at: float = 0.0
    recipients: int = 0
    held_out: int = 0
    excluded: int = 0
    batches: int = 0
    # Daily caps: the UTC day whose allowance the planned page was reserved from, and, while
    # today's allowance is used up, when dispatch goes on (the sweep restarts it then).
    reserved_day: str = ""
    held_until: float = 0.0
    # While the audience waits for the subscriber mirror to catch up (an import's rows still
    # on their way to the warehouse): how many confirmed subscribers it lacked at the last look.
    mirror_missing: int = 0

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> PhaseProgress:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


@dataclass(frozen=True)
class PageOutcome:
    """What dispatching one page did, added to the phase's totals."""

    recipients: int = 0
    held_out: int = 0
    excluded: int = 0
    batches: int = 0


@dataclass
class Campaign:
    id: str
    name: str
    template: str
    subject: str | None = None  # literal; None: the template's <title>
    sender: str | None = None
    segment: dict[str, Any] = field(default_factory=dict)
    ab: dict[str, Any] | None = None
    context: dict[str, Any] = field(default_factory=dict)
    track_opens: bool = True
    track_clicks: bool = True
    status: str = DRAFT
    paused_from: str | None = None
    phase: str | None = None
    progress: dict[str, PhaseProgress] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    scheduled_at: float | None = None
    audience_at: float | None = None  # when sending started: the audience snapshot time
    remainder_stashed: bool = False  # A/B: the remainder phase reads the test phase's stash
    audience_snapshot: bool = False  # every phase walks the audience snapshot (SQL, blob store)
    # Batches sized by each group's expected share of a page (an A/B test phase: pages of
    # several snapshot chunks, one batch per variant); campaigns started before keep theirs.
    sized_batches: bool = False
    finished_at: float | None = None
    test_dispatched_at: float | None = None
    test_ends_at: float | None = None  # set once the test cohort has been delivered
    winner: str | None = None
    decision: dict[str, Any] | None = None
    resumed_at: float | None = None
    resends: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    # -- persistence ---------------------------------------------------------------------

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Campaign:
        names = {f.name for f in fields(cls)}
        data = {k: v for k, v in doc.items() if k in names}
        stored = doc.get("progress") or {}
        data["progress"] = {phase: PhaseProgress.from_doc(p) for phase, p in stored.items()}
        return cls(**data)

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    # -- derived -------------------------------------------------------------------------

    @property
    def ab_test(self) -> AbTest | None:
        return AbTest.from_spec(self.ab) if self.ab else None

    @property
    def audience(self) -> Segment:
        return Segment.parse(self.segment)

    @property
    def phases(self) -> tuple[str, ...]:
        return (PHASE_TEST, PHASE_REMAINDER) if self.ab else (PHASE_ALL,)

    def progress_of(self, phase: str) -> PhaseProgress:
        return self.progress.setdefault(phase, PhaseProgress())

    def content(self, variant: str | None) -> tuple[str, str | None]:
        """(template, literal subject or None) for a variant (None: no A/B test)."""
        ab = self.ab_test
        if variant is None or ab is None:
            return self.template, self.subject
        chosen = ab.variant(variant)
        return chosen.template or self.template, chosen.subject or self.subject

    def variant_names(self) -> list[str | None]:
        ab = self.ab_test
        return [v.name for v in ab.variants] if ab else [None]

    def is_due(self, now: float) -> bool:
        return self.status == SCHEDULED and (self.scheduled_at or 0) <= now

    def needs_decision(self, now: float) -> bool:
        """An A/B test whose window is over (or whose winner was picked by hand)."""
        if self.status != TESTING:
            return False
        return self.winner is not None or (
            self.test_ends_at is not None and self.test_ends_at <= now
        )

    @property
    def awaits_window(self) -> bool:
        """Testing, but the window has not started: the test cohort is still being sent."""
        return self.status == TESTING and self.winner is None and self.test_ends_at is None

    def start_window(self, now: float) -> None:
        """The test cohort has been delivered: the A/B window starts now."""
        ab = self.ab_test
        if not self.awaits_window or ab is None:
            raise Conflict(f"campaign {self.id!r} is not waiting for its A/B window")
        self.test_ends_at = now + ab.window_hours * 3600
        self.updated_at = now

    # -- state machine -------------------------------------------------------------------

    def _become(self, status: str, now: float, note: str = "") -> None:
        self.history.append({"at": now, "from": self.status, "to": status, "note": note})
        self.status = status
        self.updated_at = now

    def _require(self, action: str, allowed: tuple[str, ...]) -> None:
        if self.status not in allowed:
            raise Conflict(
                f"cannot {action} campaign {self.id!r}: it is {self.status} "
                f"({action} applies to {' or '.join(allowed)} campaigns)"
            )

    def schedule(self, at: float, now: float) -> None:
        self._require("schedule", (DRAFT, SCHEDULED))
        if at <= now:
            raise InvalidInput(
                "the scheduled time is in the past; use `send` to send now", field="at"
            )
        self.scheduled_at = at
        self._become(SCHEDULED, now)

    def start(self, now: float, token: str, snapshot: bool = False) -> str:
        """Begin sending now; returns the first phase to dispatch. With `snapshot`, every
        phase walks the audience snapshot; otherwise the subscriber documents (and an A/B
        remainder the test phase's stash)."""
        self._require("send", (DRAFT, SCHEDULED))
        self.audience_at = now
        self.audience_snapshot = snapshot
        self.sized_batches = True
        self.remainder_stashed = bool(self.ab) and not snapshot
        self.phase = self.phases[0]
        self.progress = {self.phase: PhaseProgress(token=token, started_at=now, updated_at=now)}
        self._become(SENDING, now)
        return self.phase

    def unschedule(self, now: float, reason: str) -> None:
        """Back to draft (the sweep does this when the preview fails at the scheduled time)."""
        self._require("unschedule", (SCHEDULED,))
        self.scheduled_at = None
        self._become(DRAFT, now, reason)

    def pause(self, now: float) -> None:
        self._require("pause", PAUSABLE)
        self.paused_from = self.status
        self._become(PAUSED, now)

    def resume(self, now: float, token: str) -> str | None:
        """Back to where it was; returns the phase to continue dispatching, if any."""
        self._require("resume", (PAUSED,))
        previous = self.paused_from or SENDING
        self.paused_from = None
        self.resumed_at = now
        self._become(previous, now)
        if previous == SENDING and self.phase and not self.progress_of(self.phase).done:
            self.rotate_token(self.phase, token, now)
            return self.phase
        return None

    def cancel(self, now: float) -> None:
        self._require("cancel", (DRAFT, SCHEDULED, SENDING, TESTING, SENT, PAUSED))
        self._become(CANCELLED, now)

    def choose_winner(self, winner: str, decision: dict[str, Any], now: float) -> None:
        """Record the winner (by rule or by hand) while the remainder is still unsent."""
        ab = self.ab_test
        if ab is None:
            raise Conflict(f"campaign {self.id!r} has no A/B test")
        ab.variant(winner)  # InvalidInput for an unknown name
        if self.phase == PHASE_REMAINDER:
            raise Conflict(
                f"campaign {self.id!r} is already sending the remainder with {self.winner}"
            )
        if self.status in (DRAFT, SCHEDULED, CANCELLED):
            raise Conflict(f"campaign {self.id!r} is {self.status}: there is no test to decide")
        self.winner = winner
        self.decision = {**decision, "decided_at": now}
        self.updated_at = now

    def start_remainder(self, now: float, token: str) -> str:
        """testing -> sending the remainder with the winner."""
        self._require("start the remainder of", (TESTING,))
        if self.winner is None:
            raise Conflict(f"campaign {self.id!r} has no winner yet")
        self.phase = PHASE_REMAINDER
        self.progress[PHASE_REMAINDER] = PhaseProgress(token=token, started_at=now, updated_at=now)
        self._become(SENDING, now, f"remainder gets {self.winner}")
        return PHASE_REMAINDER

    def finish_phase(self, phase: str, now: float, token: str) -> str | None:
        """The last page of `phase` is dispatched. Returns the next phase to dispatch now, if
        any (the remainder, when the winner was already picked by hand)."""
        progress = self.progress_of(phase)
        progress.done = True
        progress.lease_until = 0.0
        progress.updated_at = now
        if phase == PHASE_TEST:
            self.test_dispatched_at = now  # the window starts once these are delivered
            nxt = TESTING
        else:
            self.finished_at = now
            nxt = SENT
        if self.status == PAUSED:
            self.paused_from = nxt
            return None
        if self.status != SENDING:
            return None  # cancelled meanwhile
        self._become(nxt, now)
        if nxt == TESTING and self.winner is not None:
            return self.start_remainder(now, token)
        return None

    # -- resends ------------------------------------------------------------------------

    def begin_resend(self, recipients: int, buckets: int, now: float) -> dict[str, Any]:
        """Reserve the next resend number (or the unfinished one, to publish it again)."""
        self._require("resend failed recipients of", (SENDING, TESTING, SENT))
        if self.resends and self.resends[-1]["state"] == "publishing":
            return self.resends[-1]
        resend = {"n": len(self.resends) + 1, "state": "publishing", "buckets": buckets,
                  "recipients": recipients, "batches": 0, "at": now}  # fmt: skip
        self.resends.append(resend)
        self.updated_at = now
        return resend

    def finish_resend(self, n: int, batches: int, now: float) -> None:
        for resend in self.resends:
            if resend["n"] == n:
                resend.update(state="published", batches=batches, published_at=now)
        self.updated_at = now

    # -- dispatch bookkeeping ------------------------------------------------------------

    def rotate_token(self, phase: str, token: str, now: float) -> None:
        """Make `token` the only valid continuation message of the phase."""
        progress = self.progress_of(phase)
        progress.token = token
        progress.lease_until = 0.0
        progress.updated_at = now

    def claim(self, phase: str, token: str | None, owner: str, now: float, lease_s: float) -> bool:
        """Take the phase's dispatch lease; False when this message has nothing to do (stale
        token, another live dispatcher, phase done, campaign not sending)."""
        if self.status != SENDING or self.phase != phase:
            return False
        progress = self.progress_of(phase)
        if progress.done or (token is not None and token != progress.token):
            return False
        if progress.lease_until > now and progress.lease_owner != owner:
            return False
        progress.lease_owner = owner
        progress.lease_until = now + lease_s
        progress.held_until = 0.0
        progress.mirror_missing = 0
        progress.updated_at = now
        return True

    def holds_lease(self, phase: str, owner: str) -> bool:
        return self.progress_of(phase).lease_owner == owner

    def plan_page(
        self, phase: str, owner: str, last_id: str, now: float, lease_s: float, day: str = ""
    ) -> None:
        """Record the end of the page about to be published (and the day it was reserved on)."""
        progress = self._leased(phase, owner)
        progress.planned_end = last_id
        progress.reserved_day = day
        progress.lease_until = now + lease_s
        progress.updated_at = now

    def page_done(
        self,
        phase: str,
        owner: str,
        outcome: PageOutcome,
        next_end: str | None,
        now: float,
        lease_s: float,
        next_day: str = "",
    ) -> None:
        """The planned page is published; plan the next one (None: there is none, or none
        within today's allowance)."""
        progress = self._leased(phase, owner)
        progress.cursor = progress.planned_end
        progress.planned_end = next_end
        progress.reserved_day = next_day
        progress.page += 1
        progress.recipients += outcome.recipients
        progress.held_out += outcome.held_out
        progress.excluded += outcome.excluded
        progress.batches += outcome.batches
        progress.lease_until = now + lease_s
        progress.updated_at = now

    def release(self, phase: str, owner: str, token: str, now: float) -> None:
        """Give the lease up and name the continuation message that may pick up from here."""
        self._leased(phase, owner)
        self.rotate_token(phase, token, now)

    def hold(self, phase: str, owner: str, token: str, until: float, now: float) -> None:
        """Today's allowance is used up (or the mirror lags): give the lease back; the sweep
        goes on at `until`."""
        self.release(phase, owner, token, now)
        self.progress_of(phase).held_until = until

    def wait_for_mirror(
        self, phase: str, owner: str, token: str, until: float, missing: int, now: float
    ) -> None:
        """The subscriber mirror still lacks `missing` subscribers of the audience: give the
        lease back; the sweep looks again at `until`."""
        self.hold(phase, owner, token, until, now)
        self.progress_of(phase).mirror_missing = missing

    def held_until(self) -> float | None:
        """When a sending campaign waiting for the next day's allowance goes on."""
        if self.status != SENDING or not self.phase or self.mirror_missing():
            return None
        return self.progress_of(self.phase).held_until or None

    def mirror_missing(self) -> int:
        """How many subscribers the mirror lacked when the campaign last waited for it
        (0: it is not waiting)."""
        if self.status != SENDING or not self.phase:
            return 0
        return self.progress_of(self.phase).mirror_missing

    def _leased(self, phase: str, owner: str) -> PhaseProgress:
        progress = self.progress_of(phase)
        if progress.lease_owner != owner:
            raise Conflict(f"dispatch of {self.id}/{phase} was taken over by another invocation")
        return progress

    def is_stalled(self, now: float, stall_s: float) -> bool:
        """Sending, yet nobody dispatched for `stall_s` and no lease is live: the message that
        should continue it was lost (a crash between two writes); the sweep restarts it."""
        if self.status != SENDING or not self.phase:
            return False
        progress = self.progress_of(self.phase)
        if progress.held_until:  # waiting for tomorrow's allowance: go on once it is there
            return not progress.done and progress.held_until <= now and progress.lease_until <= now
        return (
            not progress.done
            and progress.lease_until <= now
            and (progress.updated_at <= now - stall_s)
        )


# -- creating a campaign -----------------------------------------------------------------------


def new_campaign(spec: object, campaign_id: str, now: float) -> Campaign:
    """A validated draft from a request body; InvalidInput names the bad field."""
    if not isinstance(spec, dict):
        raise InvalidInput("a campaign must be a JSON object")
    known = {"id", "name", "template", "subject", "sender", "segment", "ab", "context",
             "track_opens", "track_clicks"}  # fmt: skip
    extra = sorted(set(spec) - known)
    if extra:
        raise InvalidInput(f"unknown campaign field(s) {', '.join(extra)}; known: "
                           f"{', '.join(sorted(known))}", field=extra[0])  # fmt: skip
    if not CAMPAIGN_ID.match(campaign_id):
        raise InvalidInput(
            "id must be 1-63 lowercase letters, digits or -, starting with a letter or digit",
            field="id",
        )
    campaign = Campaign(
        id=campaign_id,
        name=_text(spec.get("name"), "name", MAX_NAME),
        template=_template(spec.get("template"), "template"),
        subject=_optional_text(spec.get("subject"), "subject", MAX_SUBJECT),
        sender=_optional_text(spec.get("sender"), "sender", MAX_SUBJECT),
        segment=_segment(spec.get("segment")),
        ab=_ab(spec.get("ab")),
        context=template_variables(spec.get("context")),
        track_opens=_flag(spec.get("track_opens", True), "track_opens"),
        track_clicks=_flag(spec.get("track_clicks", True), "track_clicks"),
        created_at=now,
        updated_at=now,
    )
    campaign.history.append({"at": now, "from": None, "to": DRAFT, "note": "created"})
    return campaign


def _text(value: object, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{name} is required", field=name)
    text = " ".join(value.split())
    if len(text) > limit:
        raise InvalidInput(f"{name} is longer than {limit} characters", field=name)
    return text


def _optional_text(value: object, name: str, limit: int) -> str | None:
    return None if value is None or value == "" else _text(value, name, limit)


def _template(value: object, name: str) -> str:
    if not isinstance(value, str) or not TEMPLATE_NAME.match(value):
        raise InvalidInput(
            f"{name} must name an email template (letters, digits, - or _), e.g. newsletter",
            field=name,
        )
    return value


def _segment(value: object) -> dict[str, Any]:
    return Segment.parse(value).spec


def _ab(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    ab = AbTest.from_spec(value)
    for index, variant in enumerate(ab.variants):
        if variant.template is not None:
            _template(variant.template, f"ab.variants[{index}].template")
    return ab.to_spec()


def template_variables(value: object) -> dict[str, Any]:
    """A campaign's template variables (`context`), checked; InvalidInput otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("context must be a JSON object of template variables", field="context")
    reserved = sorted(RESERVED_CONTEXT & set(value))
    if reserved:
        raise InvalidInput(
            f"context may not set {', '.join(reserved)}: each recipient's own value is used",
            field="context",
        )
    if len(json.dumps(value)) > MAX_CONTEXT_BYTES:
        raise InvalidInput(f"context is larger than {MAX_CONTEXT_BYTES} bytes", field="context")
    return dict(value)


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false", field=name)
    return value
