"""GCP adapters: Firestore, Pub/Sub (publisher and dead letters), Cloud Storage and BigQuery
through the official google-cloud clients.

Each module holds one adapter with a `from_settings(settings, meter)` classmethod that
shared/bootstrap.py calls lazily when MAILPIPE_BACKEND=gcp; clients are built there
(shared/adapters/gcp/clients.py), never at import time. SDK errors become domain errors in one
place: shared/adapters/gcp/errors.py. tests/contract runs the same suite against each of these
and its local counterpart.
"""
