"""The one declaration of Mailpipe's topology: functions, triggers, topics, subscriptions,
dead-letter topics and retry policies.

The local runner builds its bus and HTTP routes from this module, and a test proves that
`terraform/` declares exactly the same things, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.pricing import vcpus_for_memory

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


# Cloud Run functions (2nd gen) limits: at most 1,000 concurrent requests per instance; a
# concurrency above 1 needs at least 1 vCPU; below 1 vCPU the CPU is 0.08..1, above it whole.
MAX_CONCURRENCY = 1000
MIN_CPU = 0.08


@dataclass(frozen=True)
class Function:
    """One Cloud Function (2nd gen). `route` is its local path prefix for HTTP functions.

    Capacity: `max_instances` instances of `cpu` vCPUs (None: the default of the memory tier)
    each take `concurrency` requests at a time; a request beyond instances x concurrency is
    answered 429, which Pub/Sub push counts as a failed delivery attempt.
    """

    name: str
    entry_point: str
    trigger_topic: str | None = None  # Pub/Sub-triggered when set, HTTP otherwise
    route: str | None = None
    public: bool = False  # allUsers may invoke it (signup, confirm, tracking, webhooks ...)
    memory_mb: int = 256
    timeout_s: int = 60
    max_instances: int = 20
    concurrency: int = 1
    cpu: float | None = None

    def __post_init__(self) -> None:
        problem = _capacity_problem(self.vcpu, self.concurrency, self.memory_mb)
        if problem:
            raise ValueError(f"function {self.name}: {problem}")

    @property
    def vcpu(self) -> float:
        """The vCPUs an instance gets: `cpu`, else the memory tier's default."""
        return self.cpu if self.cpu is not None else vcpus_for_memory(self.memory_mb)

    @property
    def capacity(self) -> int:
        """Requests the function takes at once at most: instances x concurrency."""
        return self.max_instances * self.concurrency

    @property
    def is_http(self) -> bool:
        return self.trigger_topic is None

    @property
    def folder(self) -> str:
        return self.name.replace("-", "_")

    @property
    def source(self) -> Path:
        return FUNCTIONS_DIR / self.folder / "main.py"


def _capacity_problem(cpu: float, concurrency: int, memory_mb: int) -> str:
    """What Cloud Run would refuse in this combination; "" when it is accepted."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        return f"concurrency must be 1..{MAX_CONCURRENCY}"
    if concurrency > 1 and cpu < 1:
        return "a concurrency above 1 needs at least 1 vCPU"
    if cpu < MIN_CPU or (cpu > 1 and not float(cpu).is_integer()):
        return f"cpu must be {MIN_CPU}..1 or a whole number"
    if (memory_mb > 1024 and cpu < 1) or (memory_mb > 512 and cpu < 0.5):
        return "more than 512 MB needs 0.5 vCPU, more than 1 GB 1 vCPU"
    return ""


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

# Retry policies. Pub/Sub push counts a 429 (the function at its capacity) or a 5xx as a failed
# attempt, backs off 10 s .. 600 s and dead-letters after max_attempts (5 .. 100). The budget
# is the time a message may wait out refusals before it is dead-lettered (README: Fan-out).
_FAST = RetryPolicy(minimum_backoff_s=10, maximum_backoff_s=600, max_attempts=5)
# Render: an unpaced burst of render batches (dispatch publishes 100 per invocation, a resend
# or a campaign whose pacing is off all at once) drains in waves of the render capacity; 20
# attempts give 2.3 h of backoff (10+20+...+320 s, then 600 s each) where a 1 M burst needs 10
# waves (shared/simulation.py). A batch that fails for itself still reaches the hold that day.
_RENDERING = RetryPolicy(minimum_backoff_s=10, maximum_backoff_s=600, max_attempts=20)
# Send: what comes back to the bus is a few recipients the provider still defers after the
# send function's own retry passes (see services/sending.py), not the whole batch: a short,
# flat backoff suits a per-recipient retry; a doubling up to ten minutes left the last ones of
# a batch waiting that long between tries. Server-wide throttling is the rate limiter's part.
# 100 attempts (the most Pub/Sub allows) make the budget 97 minutes, so send batches refused
# by a full send function while the provider's rate holds them back are not dead-lettered.
_SENDING = RetryPolicy(minimum_backoff_s=10, maximum_backoff_s=60, max_attempts=100)
_RETRY = {"render": _RENDERING, "send": _SENDING}

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
    # Capacity of the fan-out stages, from `make bench` stage costs (CPU per invocation on one
    # core; README "Fan-out the platform can take" has the table and the arithmetic):
    # Dispatch: 0.075 ms of CPU per recipient; one invocation at a time per campaign phase (a
    # lease), so concurrency cannot help; 0.167 vCPU (256 MB) pages 1,800 recipients/s with
    # a 50 ms page read, more than the pace it publishes at (MAILPIPE_CAMPAIGN_SEND_RATE_PER_S).
    Function("dispatch", "dispatch", trigger_topic=CAMPAIGN_DISPATCH, timeout_s=540),
    # Render: 126 ms of CPU per batch of 250, CPU-bound but for its reads and its publish; one
    # vCPU serves 4 at once (the publish of one overlaps the rendering of the others) and 100
    # instances take 400 batches at once, 790 batches/s: a 1 M campaign's 4,000 batches in
    # 5 s of rendering, far above any provider's rate.
    Function(
        "render",
        "render",
        trigger_topic=RENDER_REQUESTS,
        memory_mb=512,
        timeout_s=300,
        cpu=1,
        concurrency=4,
        max_instances=100,
    ),
    # Send: 24 ms of CPU per batch; the rest is waiting on the provider (its round trips and
    # its rate), so one vCPU serves 16 batches at once; 50 instances hold 800. Paced at
    # 1,000/s, 4.4 batches/s each held ~0.5 s keep 2 busy: the room is for a slow provider and
    # for unpaced sends (a resend, triggers), whose backlog fills it (bench/simulation.py).
    Function(
        "send",
        "send",
        trigger_topic=SEND_REQUESTS,
        memory_mb=512,
        timeout_s=540,
        cpu=1,
        concurrency=16,
        max_instances=50,
    ),
    # Feedback: one message per provider event (webhooks publish each event of a posted batch),
    # so a campaign's delivery reports arrive at its send rate, ~1,000/s; each is a store read
    # or two and a publish (I/O), 50 at once on one vCPU, 20 instances take 1,000 at once.
    Function("feedback", "feedback", trigger_topic=ESP_FEEDBACK, cpu=1, concurrency=50),
    # Warehouse: one message per send batch, 13 ms of CPU plus a BigQuery streaming insert
    # (I/O): 4 at once on one vCPU; 20 instances take 80, 20x the send batches of 1,000/s.
    Function("warehouse", "warehouse", trigger_topic=ANALYTICS_EVENTS, cpu=1, concurrency=4),
    Function("events", "events", route="/events", public=True),  # API key: customers' backends
    Function("triggers", "triggers", trigger_topic=BEHAVIOUR_EVENTS),
    Function("imports", "imports", trigger_topic=SUBSCRIBER_IMPORTS, memory_mb=512, timeout_s=540),
)

SUBSCRIPTIONS: tuple[Subscription, ...] = tuple(
    Subscription(
        name=f"{f.name}-on-{f.trigger_topic}",
        topic=f.trigger_topic,
        function=f.name,
        retry=_RETRY.get(f.name, _FAST),
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
