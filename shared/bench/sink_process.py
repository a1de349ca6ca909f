"""The SMTP sink in its own process, for the campaign benchmark (so the sink does not compete
with the pipeline for one interpreter lock): `python -m shared.bench.sink_process PORT DIR
[faults]`; with `faults`, the faulty sink (bench/faulty_sink.py), whose fault counts are the
last line it prints when stopped."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

from shared.bench.faulty_sink import FaultySink
from shared.runner.smtp_sink import SmtpSink


def main() -> None:
    port, maildir = int(sys.argv[1]), Path(sys.argv[2])
    faulty = "faults" in sys.argv[3:]
    sink = (
        FaultySink(maildir, port).start()
        if faulty
        else SmtpSink(maildir, "127.0.0.1", port).start()
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    faults = sink.stop()
    print(json.dumps({"faults": faults or {}}), flush=True)


if __name__ == "__main__":
    main()
