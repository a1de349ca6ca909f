"""Builds the official google-cloud clients from Settings, only when an adapter asks.

Nothing here runs at import time; the SDK modules themselves are imported inside each function,
so a function that never touches BigQuery never pays for importing it. Endpoints come from
settings (empty: Google's). A plain-http endpoint is a local emulator or test server: it gets
anonymous credentials. The SDKs also honour their own emulator variables
(FIRESTORE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST, STORAGE_EMULATOR_HOST).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.domain.errors import ConfigurationError
from shared.settings import Settings

if TYPE_CHECKING:
    import google.cloud.pubsub_v1 as pubsub_v1
    import google.cloud.storage as storage
    from google.cloud import bigquery, firestore


def _endpoint_kwargs(endpoint: str) -> dict[str, Any]:
    """client_options (and anonymous credentials for a plain-http endpoint) for `endpoint`."""
    if not endpoint:
        return {}
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    kwargs: dict[str, Any] = {"client_options": ClientOptions(api_endpoint=endpoint)}
    if endpoint.startswith("http://"):
        kwargs["credentials"] = AnonymousCredentials()
    return kwargs


def firestore_client(settings: Settings) -> firestore.Client:
    from google.cloud import firestore

    return firestore.Client(project=settings.gcp_project, database=settings.firestore_database)


def publisher_client(
    settings: Settings,
    batch_settings: pubsub_v1.types.BatchSettings,
    publisher_options: pubsub_v1.types.PublisherOptions,
) -> pubsub_v1.PublisherClient:
    """A batching publisher: gRPC by default (or the PUBSUB_EMULATOR_HOST emulator), REST to
    `pubsub_api_endpoint` when `pubsub_transport` is "rest"."""
    import google.cloud.pubsub_v1 as pubsub_v1

    kwargs = _pubsub_kwargs(settings)
    return pubsub_v1.PublisherClient(batch_settings, publisher_options, **kwargs)


def subscriber_client(settings: Settings) -> pubsub_v1.SubscriberClient:
    """For synchronous pull/ack/modify-ack-deadline (dead letters), never streaming pull."""
    import google.cloud.pubsub_v1 as pubsub_v1

    return pubsub_v1.SubscriberClient(**_pubsub_kwargs(settings))


def _pubsub_kwargs(settings: Settings) -> dict[str, Any]:
    transport = settings.pubsub_transport
    if transport not in ("grpc", "rest"):
        raise ConfigurationError(
            f"MAILPIPE_PUBSUB_TRANSPORT must be grpc or rest, not {transport!r}"
        )
    if transport == "grpc":
        return _endpoint_kwargs(settings.pubsub_api_endpoint)
    # google-cloud-pubsub 2.44 cannot combine REST with PUBSUB_EMULATOR_HOST (it hands the
    # REST transport a gRPC channel), so REST always names its endpoint.
    if "PUBSUB_EMULATOR_HOST" in settings.extra:
        raise ConfigurationError(
            "MAILPIPE_PUBSUB_TRANSPORT=rest cannot be used with PUBSUB_EMULATOR_HOST"
        )
    return {"transport": "rest", **_endpoint_kwargs(settings.pubsub_api_endpoint)}


def storage_client(settings: Settings) -> storage.Client:
    import google.cloud.storage as storage

    return storage.Client(
        project=settings.gcp_project, **_endpoint_kwargs(settings.storage_api_endpoint)
    )


def bigquery_client(settings: Settings) -> bigquery.Client:
    from google.cloud import bigquery

    return bigquery.Client(
        project=settings.gcp_project, **_endpoint_kwargs(settings.bigquery_api_endpoint)
    )
