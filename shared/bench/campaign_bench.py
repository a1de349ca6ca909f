"""Campaign benchmark: an A/B campaign to N subscribers through the whole local pipeline (the
real runner, bus, functions and SMTP sink or null provider), end to end, with duplicates,
missing recipients, peak memory and every billable operation counted for the cost figure."""

from __future__ import annotations

import json
import mailbox
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from shared import topology
from shared.adapters.esp.smtp_connection import SmtpConnection
from shared.bootstrap import Container
from shared.domain.campaign import SENT
from shared.domain.events import decode_events
from shared.domain.subscriber import CONFIRMED, Subscriber
from shared.metering import OperationMeter, Tally
from shared.runner.local_runner import LocalRunner
from shared.settings import Settings
from shared.topology import REPO_ROOT

WAREHOUSE_PROCESS = "warehouse_process"  # the runner's child that stands in for BigQuery
AB_SPEC = {
    "variants": [{"name": "A"}, {"name": "B", "subject": "Spring, in one email"}],
    "test_fraction": 0.2,
    "metric": "clicks",
    "window_hours": 0.001,  # ~4 s: the benchmark measures sending, not waiting
    "min_sample": 100,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The cost cases' segment (issue 13): one subscriber in ten, by an attribute the seed sets.
SEGMENT_10PCT = {"attribute": "decile", "op": "==", "value": 0}


def segment_size(audience: int) -> int:
    """How many of `seed`'s subscribers SEGMENT_10PCT selects."""
    return -(-audience // 10)


def seed(container: Container, audience: int) -> None:
    """The audience, created as an import does (commits of 500, each mirrored in one message),
    and its subscriber mirror rows delivered to the warehouse before the campaign starts, as a
    deployment's would have been long before."""
    cities = ("Berlin", "Lisbon", "Oslo", "Austin")
    people = [
        Subscriber(
            id=container.subscribers.id_for(f"reader{i}@example.com"),
            email=f"reader{i}@example.com",
            status=CONFIRMED,
            first_name=f"Reader{i}",
            created_at=1.7e9,
            confirmed_at=1.7e9,
            attributes={"city": cities[i % 4], "plan": "pro", "decile": i % 10},
        )
        for i in range(audience)
    ]
    container.subscribers.create_many(people)
    deliver_mirror(container)


def seed_in_own_process(data_dir: Path, audience: int) -> None:
    """`seed` in a process of its own: creating a list and warehousing its mirror rows loads
    DuckDB and builds batches of subscribers, setup whose memory would otherwise count as the
    campaign's peak."""
    command = [sys.executable, "-m", "shared.bench.campaign_bench", "seed", str(audience),
               str(data_dir)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)


def setup_container(data_dir: Path) -> Container:
    """A container on `data_dir` for setup done in a process of its own (seeding, the mirror)."""
    settings = Settings(data_dir=data_dir, template_root=REPO_ROOT / "templates",
                        log_level="WARNING")  # fmt: skip
    return Container(settings, meter=OperationMeter())


def deliver_mirror(container: Container) -> int:
    """Everything waiting on the warehouse's subscription (the subscriber mirror's rows among
    it) into the warehouse before the campaign starts, as a deployment's would have been long
    before; returns how many messages. Setup, not the measured run: it reads the bus without
    the capacity model, which would refuse a backlog of a whole list's mirror rows as a burst
    of pushes (and dead-letter what a wave after wave of refusals leaves)."""
    uncapped = Container(replace(container.settings, bus_capacity_scale=0), meter=OperationMeter())
    subscription = topology.subscription("warehouse-on-analytics-events").name
    delivered = 0
    while deliveries := uncapped.bus.pull(subscription, 100):
        for delivery in deliveries:
            container.warehousing.handle(decode_events(delivery.data))
        uncapped.bus.ack_many(subscription, [d.message_id for d in deliveries])
        delivered += len(deliveries)
    return delivered


def finished(container: Container, campaign_id: str) -> int:
    """Recipients with a final outcome in the ledger (one document per batch)."""
    entries = container.ledger.iter_campaign(campaign_id, 20)  # a few at a time: its memory is
    # the benchmark's, not the pipeline's, and must not grow with the audience
    return sum(1 for e in entries for o in e.outcomes.values() if not o.startswith("transient"))


class Sink:
    def __init__(self, maildir: Path, port: int, faults: bool = False) -> None:
        command = [sys.executable, "-m", "shared.bench.sink_process", str(port), str(maildir)]
        self.process = subprocess.Popen([*command, *(["faults"] if faults else [])],
                                        stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert self.process.stdout and self.process.stdout.readline().strip() == "ready"
        self.maildir = maildir
        self.port = port
        self.faults: dict[str, int] = {}

    def stop(self) -> None:
        self.process.terminate()
        out, _ = self.process.communicate(timeout=30)
        lines = out.strip().splitlines()
        self.faults = json.loads(lines[-1])["faults"] if lines else {}

    def message_ids(self) -> Counter[str]:
        box = mailbox.Maildir(str(self.maildir), create=True)
        ids: Counter[str] = Counter()
        for key in box.iterkeys():
            head = box.get_bytes(key)[:4096].split(b"\r\n\r\n")[0]
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"message-id:"):
                    ids[line.split(b":", 1)[1].strip().decode()] += 1
        return ids


def sink_capacity(messages: int = 2000, clients: int = 4) -> int:
    """Messages/s the SMTP sink alone accepts from `clients` connections of the campaign's
    SMTP client (pipelined: one round trip per message), with a message of the newsletter's
    size: the ceiling for a campaign through it on this machine. Each must be stored once."""
    folder = Path(tempfile.mkdtemp(prefix="mailpipe-sink-")) / "mail"
    sink = Sink(folder, free_port())
    body = (b"x" * 74 + b"\r\n") * 200
    per_client = messages // clients

    def client(k: int) -> None:
        envelopes = [
            ("a@example.com", "b@example.com", _bench_message(f"{k}.{i}", body))
            for i in range(per_client)
        ]
        with SmtpConnection("127.0.0.1", sink.port) as smtp:
            for this, then in zip(envelopes, [*envelopes[1:], None], strict=True):
                smtp.send_one(*this, then=then)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    sink.stop()
    stored = sink.message_ids()
    shutil.rmtree(folder.parent, ignore_errors=True)
    if len(stored) != per_client * clients or set(stored.values()) != {1}:
        raise RuntimeError(f"the sink stored {sum(stored.values())} of {per_client * clients}")
    return round(per_client * clients / elapsed)


def _bench_message(message_id: str, body: bytes) -> bytes:
    head = f"From: a@example.com\r\nTo: b@example.com\r\nMessage-ID: <{message_id}@x>\r\n"
    return head.encode() + b"\r\n" + body


def run(
    audience: int,
    esp: str,
    ab: bool = True,
    workers: int = 2,
    timeout_s: float = 900,
    faults: bool = False,
    segment: bool = False,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """One campaign to a list of `audience` subscribers; with `segment` to SEGMENT_10PCT of
    them only; with `faults` (SMTP only) into the faulty sink: 451 to 20 % of RCPTs, 421 to
    2 % of connections (bench/faulty_sink.py). With `data_dir`, to the `audience` confirmed
    subscribers already there, their mirror rows warehoused (make bench-scale imports them and
    delivers the mirror in a process of its own); else to new ones, seeded likewise."""
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix=f"mailpipe-bench-{esp}-"))
        seed_in_own_process(data_dir, audience)
    # Send workers overlap a provider's round trips; the null provider has none, so a second
    # send thread per process would only take the GIL from rendering and dispatch.
    send_workers = 1 if esp == "null" else 2
    settings = Settings(
        data_dir=data_dir, template_root=REPO_ROOT / "templates", port=free_port(),
        smtp_port=free_port(), esp=esp, worker_processes=workers, send_workers=send_workers,
        scheduler_interval_s=1.0, bus_poll_interval_s=0.02, esp_rate_per_s=1_000_000,
        log_level="WARNING",
    )  # fmt: skip
    container = Container(settings, meter=OperationMeter())
    sink = Sink(data_dir / "mail", settings.smtp_port, faults) if esp == "smtp" else None
    container.meter.reset()  # count the campaign, not the seeding
    runner = LocalRunner(container, with_smtp_sink=False).start()
    try:
        spec: dict[str, Any] = {"id": "bench", "name": "Benchmark", "template": "newsletter"}
        spec |= {"ab": AB_SPEC} if ab else {}
        spec |= {"segment": SEGMENT_10PCT} if segment else {}
        campaign = container.campaign_service.create(spec)
        started = time.perf_counter()
        container.campaign_service.send_now(campaign.id)
        # Progress is watched through a container of its own, so it is not counted.
        watcher = Container(settings)
        recipients = segment_size(audience) if segment else audience
        done = _wait(watcher, campaign.id, recipients, timeout_s)
        elapsed = time.perf_counter() - started
        _wait_idle(watcher, timeout_s)  # the analytics still queued: counted and warehoused
        children = _children_peak_rss_mb(runner)  # read while they run
    finally:
        runner.stop()
        if sink:
            sink.stop()
    peak_rss = _peak_rss_mb(children)  # the pipeline's, before the checks below read every result
    sent_ids = sink.message_ids() if sink else None
    result: dict[str, Any] = {
        "audience": audience,
        "recipients": recipients,
        "segment": SEGMENT_10PCT if segment else None,
        "provider": esp,
        "ab_test": ab,
        "worker_processes": workers,
        "seconds": round(elapsed, 2),
        "emails_per_s": round(done / elapsed),
        **_exactness(container, recipients, sent_ids),
        "dead_letters": sum(container.bus.counts().values()),
        "peak_rss_mb": peak_rss,
        "warehouse_peak_rss_mb": round(children.get(WAREHOUSE_PROCESS, 0.0), 1),
        "operations": _operations(container.meter, data_dir),
    }
    if faults and sink:
        result["faults"] = sink.faults
    shutil.rmtree(data_dir, ignore_errors=True)  # ~1 GB per 100,000-subscriber run
    return result


def _wait(container: Container, campaign_id: str, audience: int, timeout_s: float) -> int:
    """Until every recipient has a final outcome in the ledger. The watcher runs in the runner
    process, so it must not take CPU from the pipeline it times: it polls what is cheap (the
    campaign's status, the render and send queues) every 0.1 s, and reads the ledger (MBs of
    JSON at 100k recipients) only when those say the sending is over."""
    deadline = time.monotonic() + timeout_s
    done = 0
    while time.monotonic() < deadline:
        if _sending_over(container, campaign_id):
            done = finished(container, campaign_id)
            if done >= audience:
                return done
            if _sending_over(container, campaign_id):  # still over: nothing more will come
                raise RuntimeError(f"the campaign ended with {done} of {audience} recipients: "
                                   "was the subscriber mirror complete?")  # fmt: skip
        time.sleep(0.1)
    raise TimeoutError(f"campaign incomplete after {timeout_s} s: {done} of {audience}")


# The stages whose queues hold a campaign's messages until they are sent.
_SENDING_STAGES = tuple(
    s.name
    for s in (*topology.subscriptions_of(topology.RENDER_REQUESTS),
              *topology.subscriptions_of(topology.SEND_REQUESTS))
)  # fmt: skip


def _busy(depth: dict[str, int]) -> int:
    """Messages a subscription has ready, leased or waiting for a retry."""
    return depth["ready"] + depth["leased"] + depth["backoff"]


def _sending_over(container: Container, campaign_id: str) -> bool:
    """Every phase dispatched, and nothing left to render or send (nor waiting for a retry)."""
    if container.campaigns.get(campaign_id).status != SENT:
        return False
    depths = container.bus.depths()
    return not any(_busy(depths[name]) for name in _SENDING_STAGES)


def _wait_idle(container: Container, timeout_s: float) -> None:
    """Until no subscription has work ready, leased or waiting for a retry."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(map(_busy, container.bus.depths().values())):
            return
        time.sleep(0.5)
    raise TimeoutError(f"the pipeline did not go idle within {timeout_s} s")


def _exactness(
    container: Container, audience: int, sent_ids: Counter[str] | None
) -> dict[str, int]:
    """Duplicates and missing: from the sink's Maildir when there is one, else from the
    provider-accepted `send` rows (a resent message repeats its deterministic event id)."""
    if sent_ids is not None:
        return {
            "delivered": len(sent_ids),
            "duplicates": sum(n - 1 for n in sent_ids.values()),
            "missing": audience - len(sent_ids),
        }
    with container.warehouse.connect() as db:  # type: ignore[attr-defined]
        total, distinct = db.execute(
            "SELECT count(*), count(DISTINCT message_id) FROM events_raw WHERE event_type='send'"
        ).fetchone()
    return {"delivered": distinct, "duplicates": total - distinct, "missing": audience - distinct}


def _peak_rss_mb(children: dict[str, float]) -> dict[str, float]:
    """The pipeline's processes: the runner (HTTP, the scheduler, a bus worker) and the largest
    other bus worker. The warehouse process stands in for BigQuery (it runs the audience query
    and merges parts), which is no function's memory in GCP: it is reported beside them."""
    workers = [mb for name, mb in children.items() if name != WAREHOUSE_PROCESS]
    return {"runner_process": round(own_peak_rss_mb(), 1),
            "largest_worker_process": round(max(workers, default=0.0), 1)}  # fmt: skip


def _children_peak_rss_mb(runner: LocalRunner) -> dict[str, float]:
    """Each of the runner's child processes' peak RSS (VmHWM), by its module name (and pid)."""
    peaks = {}
    for process in runner.processes:
        warehouse = f"shared.runner.{WAREHOUSE_PROCESS}" in str(process.args)  # [python, -m, …]
        name = WAREHOUSE_PROCESS if warehouse else f"worker_process-{process.pid}"
        peaks[name] = _vm_hwm_mb(Path(f"/proc/{process.pid}/status")) or 0.0
    return peaks


def own_peak_rss_mb() -> float:
    """This process's peak RSS since it started its program. Linux folds the memory a process
    had before execve into ru_maxrss, and a child started by subprocess (vfork) had its
    parent's: a large parent would be counted as the child's peak. VmHWM is the program's own."""
    own = _vm_hwm_mb(Path("/proc/self/status"))
    return own if own is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _vm_hwm_mb(status_file: Path) -> float | None:
    """The peak RSS a /proc/<pid>/status reports, or None where there is none."""
    try:
        status = status_file.read_text()
    except OSError:
        return None
    kilobytes = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))
    return int(kilobytes) / 1024


def _operations(meter: OperationMeter, data_dir: Path) -> dict[str, dict[str, float]]:
    """This process's counts plus those the worker processes left in <data dir>/meters."""
    totals = meter.snapshot()
    for path in (data_dir / "meters").glob("*.json"):
        for name, raw in json.loads(path.read_text()).items():
            t = totals.get(name, Tally())
            totals[name] = Tally(t.operations + raw["operations"], t.bytes + raw["bytes"],
                                 t.seconds + raw["seconds"])  # fmt: skip
    return {k: {"operations": v.operations, "bytes": v.bytes, "seconds": round(v.seconds, 3)}
            for k, v in sorted(totals.items())}  # fmt: skip


def main() -> None:
    """One run in a fresh process (so peak memory is this run's), as JSON on stdout:
    python -m shared.bench.campaign_bench AUDIENCE ESP [plain] [segment] [faults]."""
    if sys.argv[1] == "sink":
        print(json.dumps({"smtp_sink_alone_per_s": sink_capacity()}))
        return
    if sys.argv[1] == "seed":  # seed AUDIENCE DATA_DIR: run's setup, in a process of its own
        seed(setup_container(Path(sys.argv[3])), int(sys.argv[2]))
        return
    audience, esp, flags = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    result = run(audience, esp, ab="plain" not in flags, faults="faults" in flags,
                 segment="segment" in flags)  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
