"""The SMTP sink in its own process, for the campaign benchmark (so the sink does not compete
with the pipeline for one interpreter lock): `python -m shared.bench.sink_process PORT DIR`."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from shared.runner.smtp_sink import SmtpSink


def main() -> None:
    port, maildir = int(sys.argv[1]), Path(sys.argv[2])
    sink = SmtpSink(maildir, "127.0.0.1", port).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    sink.stop()


if __name__ == "__main__":
    main()
