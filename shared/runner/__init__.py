"""The local runner: every function, the bus workers, an SMTP sink and the inbox in one process."""
