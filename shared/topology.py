"""The one declaration of Mailpipe's topology: functions, triggers, topics, subscriptions,
dead-letter topics and retry policies.

The local runner builds its bus and HTTP routes from this module, and a test proves that
`terraform/` declares exactly the same things, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff between redeliveries, then dead-letter after `max_attempts`."""

    minimum_backoff_s: float = 10.0
    maximum_backoff_s: float = 600.0
    max_attempts: int = 5

    def backoff(self, attempt: int) -> float:
        """Delay before delivery number `attempt + 1` (attempt counts from 1)."""
        return float(min(self.maximum_backoff_s, self.minimum_backoff_s * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class Function:
    """One Cloud Function (2nd gen). `route` is its local path prefix for HTTP functions."""

    name: str
    entry_point: str
    trigger_topic: str | None = None  # Pub/Sub-triggered when set, HTTP otherwise
    route: str | None = None
    public: bool = False  # allUsers may invoke it (signup, confirm, tracking, webhooks ...)
    memory_mb: int = 256
    timeout_s: int = 60
    max_instances: int = 20

    @property
    def is_http(self) -> bool:
        return self.trigger_topic is None

    @property
    def folder(self) -> str:
        return self.name.replace("-", "_")

    @property
    def source(self) -> Path:
        return FUNCTIONS_DIR / self.folder / "main.py"


@dataclass(frozen=True)
class Subscription:
    """Our own push subscription from `topic` to `function`, with its dead-letter topic."""

    name: str
    topic: str
    function: str
    retry: RetryPolicy
    ack_deadline_s: int = 60

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.name}-dead-letter"

    @property
    def dead_letter_subscription(self) -> str:
        """The pull subscription that keeps dead letters until an operator replays them."""
        return f"{self.dead_letter_topic}-hold"


# How long a hold subscription keeps a dead letter before it expires: 31 days, the most Pub/Sub
# allows (terraform/pubsub.tf; `mailpipe dlq` warns about dead letters close to it). The local
# bus never drops them, but warns alike.
DEAD_LETTER_RETENTION_S = 31 * 24 * 3600

# Topics carrying work between stages.
SUBSCRIBER_EVENTS = "subscriber-events"
CAMPAIGN_DISPATCH = "campaign-dispatch"
RENDER_REQUESTS = "render-requests"
SEND_REQUESTS = "send-requests"
ESP_FEEDBACK = "esp-feedback"
ANALYTICS_EVENTS = "analytics-events"
BEHAVIOUR_EVENTS = "behaviour-events"  # POST /events, lifecycle events, the trigger sweep
SUBSCRIBER_IMPORTS = "subscriber-imports"  # one step of an import file: its scan, or a chunk

TOPICS: tuple[str, ...] = (
    SUBSCRIBER_EVENTS,
    CAMPAIGN_DISPATCH,
    RENDER_REQUESTS,
    SEND_REQUESTS,
    ESP_FEEDBACK,
    ANALYTICS_EVENTS,
    BEHAVIOUR_EVENTS,
    SUBSCRIBER_IMPORTS,
)

_FAST = RetryPolicy(minimum_backoff_s=10, maximum_backoff_s=600, max_attempts=5)
# Send: what comes back to the bus is a few recipients the provider still defers after the
# send function's own retry passes (see services/sending.py), not the whole batch: a short,
# flat backoff suits a per-recipient retry; a doubling up to ten minutes left the last ones of
# a batch waiting that long between tries. Server-wide throttling is the rate limiter's part.
_SENDING = RetryPolicy(minimum_backoff_s=10, maximum_backoff_s=60, max_attempts=10)

FUNCTIONS: tuple[Function, ...] = (
    Function("signup", "signup", route="/signup", public=True),
    Function("confirm", "confirm", route="/confirm", public=True),
    Function("preferences", "preferences", route="/preferences", public=True),
    Function("unsubscribe", "unsubscribe", route="/unsubscribe", public=True),
    Function("tracking", "tracking", route="/t", public=True),
    Function("webhooks", "webhooks", route="/webhooks", public=True),
    # 512 MB: the console draws its dashboard charts with matplotlib in this function.
    Function("admin", "admin", route="/admin", public=False, memory_mb=512),
    Function("preference-sync", "preference_sync", trigger_topic=SUBSCRIBER_EVENTS),
    Function("dispatch", "dispatch", trigger_topic=CAMPAIGN_DISPATCH, timeout_s=540),
    Function("render", "render", trigger_topic=RENDER_REQUESTS, memory_mb=512, timeout_s=300),
    Function("send", "send", trigger_topic=SEND_REQUESTS, memory_mb=512, timeout_s=540),
    Function("feedback", "feedback", trigger_topic=ESP_FEEDBACK),
    Function("warehouse", "warehouse", trigger_topic=ANALYTICS_EVENTS),
    Function("events", "events", route="/events", public=True),  # API key: customers' backends
    Function("triggers", "triggers", trigger_topic=BEHAVIOUR_EVENTS),
    Function("imports", "imports", trigger_topic=SUBSCRIBER_IMPORTS, memory_mb=512, timeout_s=540),
)

SUBSCRIPTIONS: tuple[Subscription, ...] = tuple(
    Subscription(
        name=f"{f.name}-on-{f.trigger_topic}",
        topic=f.trigger_topic,
        function=f.name,
        retry=_SENDING if f.name == "send" else _FAST,
        ack_deadline_s=min(600, max(60, f.timeout_s)),
    )
    for f in FUNCTIONS
    if f.trigger_topic is not None
)


def function(name: str) -> Function:
    """The function called `name`; KeyError names what exists when it is unknown."""
    for f in FUNCTIONS:
        if f.name == name:
            return f
    raise KeyError(f"no function {name!r}; known: {', '.join(f.name for f in FUNCTIONS)}")


def subscription(name: str) -> Subscription:
    for s in SUBSCRIPTIONS:
        if s.name == name:
            return s
    raise KeyError(f"no subscription {name!r}; known: {', '.join(s.name for s in SUBSCRIPTIONS)}")


def subscriptions_of(topic: str) -> list[Subscription]:
    return [s for s in SUBSCRIPTIONS if s.topic == topic]


def dead_letter_topics() -> list[str]:
    return [s.dead_letter_topic for s in SUBSCRIPTIONS]
