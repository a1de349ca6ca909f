"""`mailpipe run`: the whole pipeline on embedded parts, on this machine.

HTTP functions on http://HOST:PORT under one prefix each, /healthz, /inbox, the bus workers
(one per subscription), an SMTP sink on SMTP_PORT storing a Maildir, a scheduler that does
what Cloud Scheduler does in GCP (publish the dispatch sweep), and in child processes the extra
worker processes and the local warehouse's process. Ctrl-C stops it cleanly; all
state lives in MAILPIPE_DATA_DIR, so a restart carries on where it stopped.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import flask

from shared import bootstrap, topology
from shared import settings as settings_module
from shared.adapters.local.bus_worker import BusWorker, OverflowRefuser
from shared.bootstrap import Container
from shared.console.access import ConsoleAccess
from shared.console.app import create_console_app
from shared.domain.errors import ConfigurationError
from shared.runner.functions_host import FunctionsHost, prepare_bus_worker_host
from shared.runner.inbox import create_inbox_app
from shared.runner.runner_file import RunnerLock, runner_info
from shared.runner.scheduler import Scheduler
from shared.runner.sink_reports import DeliveryReports
from shared.runner.smtp_sink import SmtpSink
from shared.runner.waitress_server import WaitressServer

log = logging.getLogger("mailpipe.runner")


def root_app(container: Container) -> flask.Flask:
    app = flask.Flask("mailpipe")

    @app.get("/")
    def home() -> Any:
        return flask.redirect("/signup")

    @app.get("/healthz")
    def healthz() -> Any:
        depths = container.bus.depths()
        return {"status": "ok", "queues": depths}

    return app


@dataclass
class LocalRunner:
    container: Container
    with_smtp_sink: bool = True
    worker_batch: int = 10
    extra_mounts: dict[str, Any] = field(default_factory=dict)
    stop_event: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        bootstrap.install(self.container)
        self.settings = self.container.settings
        self.host = FunctionsHost(self.container.meter)
        self.sink: SmtpSink | None = None
        self.server: WaitressServer | None = None
        self.workers: list[BusWorker] = []
        self.refuser: OverflowRefuser | None = None
        self.processes: list[subprocess.Popen[bytes]] = []
        self.scheduler: Scheduler | None = None
        self.trigger_scheduler: Scheduler | None = None  # the trigger sweep (behaviour-events)
        self._switch_interval = sys.getswitchinterval()
        self.lock = RunnerLock(self.settings.data_dir)
        # The console's keys; a missing admin key is generated for this run (and printed).
        self.console_access = ConsoleAccess.from_settings(self.settings, generate=True)

    @property
    def maildir(self):
        return self.settings.data_dir / "mail"

    def start(self) -> LocalRunner:
        """Start everything; if any part cannot start (a port in use), stop what did."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> LocalRunner:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.lock.acquire():
            raise ConfigurationError(
                f"another Mailpipe runner is using the data directory "
                f"{self.settings.data_dir.resolve()} (see its runner.json)"
            )
        self._switch_interval = prepare_bus_worker_host()
        # Leases held when the last runner died are void: their messages are due again now.
        self.container.bus.expire_leases()
        self._start_worker_processes()
        if self.with_smtp_sink and self.settings.runs_smtp_sink:
            reports = DeliveryReports(
                self.settings.data_dir / "sink", self._webhook_url, self.settings.signing_key
            )
            sink = SmtpSink(self.maildir, self.settings.smtp_host, self.settings.smtp_port,
                            reports=reports)  # fmt: skip
            self.sink = sink.start()
        self._start_http()
        runner_info(self.settings, self.http_port, self._sink_address()).write(
            self.settings.data_dir
        )
        self._start_workers()
        self.scheduler = Scheduler(self.container.publisher, self.settings.scheduler_interval_s,
                                   self.stop_event)  # fmt: skip
        self.scheduler.start()
        self.trigger_scheduler = Scheduler(self.container.publisher,
                                           self.settings.scheduler_interval_s, self.stop_event,
                                           topic=topology.BEHAVIOUR_EVENTS)  # fmt: skip
        self.trigger_scheduler.start()
        return self

    def _trigger_page(self) -> dict[str, Any]:
        from shared.analytics import triggers_report

        c = self.container
        return triggers_report.page_context(
            c.warehouse, c.dashboards.catalog, c.trigger_catalog.current()
        )

    def _start_worker_processes(self) -> None:
        env = settings_module.child_environ(self.settings)
        modules = ["shared.runner.worker_process"] * (self.settings.worker_processes - 1)
        if self.settings.is_local:
            modules.append("shared.runner.warehouse_process")
        runner = str(os.getpid())  # so a child whose runner is already gone knows it
        for module in modules:
            command = [sys.executable, "-m", module, runner]
            self.processes.append(subprocess.Popen(command, env=env))

    def _start_http(self) -> None:
        mounts = {
            "/inbox": create_inbox_app(self.maildir),
            "/dashboard": create_console_app(
                lambda: self.container, self.console_access, self._trigger_page
            ),
            **self.extra_mounts,
        }
        wsgi = self.host.wsgi(root_app(self.container), mounts)
        self.server = WaitressServer(wsgi, self.settings.host, self.settings.port).start()

    def _start_workers(self) -> None:
        self.workers = self.host.bus_workers(
            self.container.bus, self.settings, self.worker_batch, self.stop_event
        )
        if self.settings.bus_capacity_scale > 0:  # one for all processes: the bus is shared
            self.refuser = OverflowRefuser(self.container.bus, self.settings.bus_poll_interval_s,
                                           self.stop_event)  # fmt: skip
            self.refuser.start()
        for worker in self.workers:
            worker.start()

    def _webhook_url(self) -> str:
        """Where the sink reports deliveries: this runner's own webhook function ("" until this
        runner serves HTTP: whatever else answers on the port is not it)."""
        if self.server is None:
            return ""
        return f"http://{self.settings.host}:{self.http_port}/webhooks/local"

    def _sink_address(self) -> str:
        return f"{self.settings.smtp_host}:{self.sink.port}" if self.sink else ""

    @property
    def http_port(self) -> int:
        return self.server.port if self.server else self.settings.port

    def stop(self) -> None:
        self.stop_event.set()
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:  # stuck: stop it the hard way, and carry on
                log.warning("child process %d did not stop; killing it", process.pid)
                process.kill()
        for worker in self.workers:
            worker.join(timeout=30)
        if self.refuser:
            self.refuser.join(timeout=5)
        self.container.close()  # QUIT on the pooled SMTP connections
        if self.scheduler:
            self.scheduler.join(timeout=5)
        if self.trigger_scheduler:
            self.trigger_scheduler.join(timeout=5)
        if self.sink:  # before the HTTP server: its last delivery reports go to the webhook
            self.sink.stop()
        if self.server:
            self.server.stop()
        self.lock.release()
        sys.setswitchinterval(self._switch_interval)
        bootstrap.install(None)

    def banner(self) -> str:
        base = f"http://{self.settings.host}:{self.http_port}"
        lines = [
            "Mailpipe is running locally.",
            f"  signup form    {base}/signup",
            f"  inbox          {base}/inbox",
            f"  dashboard      {base}/dashboard (the console: sign in with the key below)",
            f"  console key    {self._console_key()}",
            f"  health         {base}/healthz",
            self._smtp_line(),
            f"  data directory {self.settings.data_dir.resolve()}",
            "Press Ctrl-C to stop.",
        ]
        return "\n".join(lines)

    def _smtp_line(self) -> str:
        s = self.settings
        if self.sink:
            return f"  SMTP sink      {self._sink_address()} (Maildir: {self.maildir})"
        if s.esp == "smtp":
            return f"  SMTP server    {s.smtp_host}:{s.smtp_port} (no sink: MAILPIPE_SMTP_SINK)"
        return f"  email provider {s.esp} (no SMTP sink)"

    def _console_key(self) -> str:
        if self.console_access.generated:
            return (f"{self.console_access.admin_key} (generated for this run; set "
                    "MAILPIPE_ADMIN_API_KEY to keep one)")  # fmt: skip
        return "MAILPIPE_ADMIN_API_KEY"

    def serve_forever(self) -> None:
        """Run until SIGINT/SIGTERM, then stop cleanly."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop_event.set())
        print(self.banner(), flush=True)
        self.stop_event.wait()
        print("Stopping: finishing deliveries in progress ...", flush=True)
        self.stop()
        print("Stopped. State is kept in the data directory.", flush=True)
