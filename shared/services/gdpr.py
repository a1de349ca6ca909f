"""GDPR: everything held about one person (art. 15/20 export) and its erasure (art. 17).

What is held, by store:
    subscribers (documents)   the subscriber document, with its consent records
    suppressions (documents)  keyed by a keyed hash of the address; reason and source
    tokens (documents)        confirmation tokens: only their SHA-256, purpose and expiry
    trigger_runs, trigger_activity (documents)  behavioural-trigger runs (with the event's
                              properties, e.g. cart items) and recent trigger activity
    send_ledger (documents)   one outcome per batch, keyed by the subscriber id
    campaign_remainders (documents)  an A/B campaign's remainder members (address, name,
                              attributes) between its test and remainder phases
    audience_rechecks (documents)  a campaign's last send-time re-check answer: the ids of
                              people who left its audience since its snapshot
    warehouse                 analytics rows keyed by the subscriber id (a keyed hash)
    stored mail (local only)  the Maildir of the local SMTP sink

Erasure first records a suppression with reason "erased" (keyed hash only, so the address is
never mailed again yet cannot be read back), then removes the rest: tokens deleted, ledger
outcomes pseudonymized, stored mail deleted, remainder-stash and re-check entries removed, the
subscriber document deleted, and last the warehouse rows pseudonymized (campaign totals stay
true, the person is gone). Every step is idempotent, so an interrupted erasure (BigQuery refuses to
rewrite rows still in its streaming buffer) is finished by running it again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from shared.domain import events as ev
from shared.domain.addresses import normalize_address
from shared.domain.campaign import CANCELLED, SENT
from shared.domain.errors import TransientError
from shared.domain.events import AnalyticsEvent, stable_id, utc_iso
from shared.ports import DocumentStore, Filter, Warehouse, paged
from shared.repositories import campaigns, send_ledger, tokens
from shared.repositories import subscribers as subscriber_docs
from shared.repositories import suppressions as reasons
from shared.repositories.audience_rechecks import AudienceRechecks
from shared.repositories.subscribers import Subscribers
from shared.repositories.suppressions import Suppressions
from shared.services.publishing import Outbox
from shared.services.warehouse_sql import in_dialect

WAREHOUSE_ROWS_SQL = """
SELECT * FROM events WHERE subscriber_id = @subscriber_id ORDER BY occurred_at, event_id
"""


class TriggerState(Protocol):
    """Behavioural-trigger records about one subscriber (runs carry event properties)."""

    def of_subscriber(self, subscriber_id: str) -> list[Any]: ...

    def erase_subscriber(self, subscriber_id: str) -> Any: ...


class SubscriberRecords(Protocol):
    """A store of records about subscribers that exports and erases one person's."""

    def of_subscriber(self, subscriber_id: str) -> list[dict[str, Any]]: ...

    def erase_subscriber(self, subscriber_id: str) -> int: ...


class SnapshotRecords(Protocol):
    def erase_subscriber(self, campaign_ids: Sequence[str], subscriber_id: str) -> int: ...


class StoredMail(Protocol):
    """Sent mail kept by the local SMTP sink (absent on GCP)."""

    def messages_to(self, address: str) -> list[dict[str, Any]]: ...

    def delete_to(self, address: str) -> int: ...


def pseudonym(subscriber_id: str) -> str:
    """What replaces a subscriber id in kept records (same rule as the warehouse adapters)."""
    return "erased-" + hashlib.sha256(subscriber_id.encode()).hexdigest()[:16]


class GdprService:
    def __init__(
        self,
        documents: DocumentStore,
        subscribers: Subscribers,
        suppressions: Suppressions,
        warehouse: Warehouse,
        outbox: Outbox,
        sql_dialect: str,
        clock: Callable[[], float],
        stored_mail: StoredMail | None = None,
        trigger_stores: tuple[TriggerState, ...] = (),
        remainder_stash: SubscriberRecords | None = None,
        snapshots: SnapshotRecords | None = None,
    ) -> None:
        self._documents = documents
        self._subscribers = subscribers
        self._suppressions = suppressions
        self._warehouse = warehouse
        self._outbox = outbox
        self._dialect = sql_dialect
        self._clock = clock
        self._mail = stored_mail
        self._trigger_runs = trigger_stores[0] if trigger_stores else None
        self._trigger_stores = trigger_stores
        self._remainder_stash = remainder_stash
        self._snapshots = snapshots

    def export(self, raw_email: str) -> dict[str, Any]:
        """Everything held about the address, JSON-ready. InvalidAddress for a bad address."""
        email = normalize_address(raw_email)
        subscriber_id = self._subscribers.id_for(email)
        suppression = self._documents.get(reasons.COLLECTION, self._suppressions.key(email))
        return {
            "email": email,
            "subscriber_id": subscriber_id,
            "exported_at": utc_iso(self._clock()),
            "subscriber": self._documents.get(subscriber_docs.COLLECTION, subscriber_id),
            "suppression": suppression,
            "tokens": [doc for _, doc in self._tokens(subscriber_id)],
            "send_ledger": self._ledger_outcomes(subscriber_id),
            "warehouse_events": self._warehouse_rows(subscriber_id),
            "stored_mail": self._mail.messages_to(email) if self._mail else [],
            "trigger_runs": self._trigger_runs_of(subscriber_id),
            "campaign_remainders": self._remainder_entries(subscriber_id),
            "audience_rechecks": AudienceRechecks(self._documents).naming(subscriber_id),
        }

    def erase(self, raw_email: str) -> dict[str, Any]:
        """Remove the person from every store, keeping a hashed suppression; returns counts."""
        email = normalize_address(raw_email)
        subscriber_id = self._subscribers.id_for(email)
        self._suppressions.add(email, reasons.ERASED, self._clock(), "gdpr-erasure")
        report: dict[str, Any] = {
            "tokens_deleted": self._delete_tokens(subscriber_id),
            "ledger_entries_pseudonymized": self._pseudonymize_ledger(subscriber_id),
            "stored_mail_deleted": self._mail.delete_to(email) if self._mail else 0,
            "trigger_records_deleted": self._erase_trigger_state(subscriber_id),
            "remainder_entries_erased": self._erase_remainder_entries(subscriber_id),
            "snapshot_chunks_erased": self._erase_from_snapshots(subscriber_id),
            "recheck_answers_erased": AudienceRechecks(self._documents).erase_subscriber(
                subscriber_id
            ),
            "subscriber_deleted": self._delete_subscriber(subscriber_id),
            "suppressed_as": self._suppressions.reason(email),
        }
        try:  # last: BigQuery cannot rewrite rows still in its streaming buffer
            report["warehouse_rows_pseudonymized"] = self._warehouse.erase_subscriber(subscriber_id)
        except TransientError as exc:
            raise TransientError(
                "everything but the warehouse rows is erased; the warehouse refused for now "
                f"({exc}). Run the erasure again later (rows stay in BigQuery's streaming "
                "buffer for up to about 90 minutes)."
            ) from exc
        self._outbox.analytics([_erased_event(subscriber_id, self._clock())])
        return report

    # --- stores --------------------------------------------------------------------------
    def _tokens(self, subscriber_id: str) -> list[tuple[str, dict[str, Any]]]:
        by_owner = [Filter("subscriber_id", "==", subscriber_id)]
        return [item for page in paged(self._documents, tokens.COLLECTION, by_owner)
                for item in page]  # fmt: skip

    def _delete_tokens(self, subscriber_id: str) -> int:
        found = self._tokens(subscriber_id)
        for token_id, _ in found:
            self._documents.delete(tokens.COLLECTION, token_id)
        return len(found)

    def _ledger_outcomes(self, subscriber_id: str) -> list[dict[str, Any]]:
        return [
            {"batch_id": batch_id, "campaign_id": doc.get("campaign_id"),
             "outcome": doc["outcomes"][subscriber_id], "updated_at": doc.get("updated_at")}
            for page in paged(self._documents, send_ledger.COLLECTION)
            for batch_id, doc in page
            if subscriber_id in (doc.get("outcomes") or {})
        ]  # fmt: skip

    def _pseudonymize_ledger(self, subscriber_id: str) -> int:
        """Move the subscriber's outcomes to the pseudonym (counts per batch stay right).
        The ledger is read page by page: an erasure is rare, a scan of batch documents cheap."""
        alias = pseudonym(subscriber_id)

        def rename(doc: dict[str, Any] | None) -> dict[str, Any] | None:
            outcomes = dict((doc or {}).get("outcomes") or {})
            if doc is None or subscriber_id not in outcomes:
                return None
            outcomes[alias] = outcomes.pop(subscriber_id)
            return {**doc, "outcomes": outcomes}

        entries = self._ledger_outcomes(subscriber_id)
        for entry in entries:
            self._documents.update(send_ledger.COLLECTION, entry["batch_id"], rename)
        return len(entries)

    def _trigger_runs_of(self, subscriber_id: str) -> list[dict[str, Any]]:
        if self._trigger_runs is None:
            return []
        return [run.to_doc() for run in self._trigger_runs.of_subscriber(subscriber_id)]

    def _erase_trigger_state(self, subscriber_id: str) -> int:
        erased = 0
        for store in self._trigger_stores:
            erased += int(store.erase_subscriber(subscriber_id) or 0)
        return erased

    def _remainder_entries(self, subscriber_id: str) -> list[dict[str, Any]]:
        stash = self._remainder_stash
        return stash.of_subscriber(subscriber_id) if stash else []

    def _erase_remainder_entries(self, subscriber_id: str) -> int:
        stash = self._remainder_stash
        return stash.erase_subscriber(subscriber_id) if stash else 0

    def _erase_from_snapshots(self, subscriber_id: str) -> int:
        """Remove the person from the audience snapshots of campaigns still under way (those
        of finished campaigns go with the bucket's 30-day lifecycle rule)."""
        if self._snapshots is None:
            return 0
        snapshot_campaigns = [Filter("audience_snapshot", "==", True)]
        ongoing = [
            campaign_id
            for page in paged(self._documents, campaigns.COLLECTION, snapshot_campaigns)
            for campaign_id, doc in page
            if doc.get("status") not in (SENT, CANCELLED)
        ]
        return self._snapshots.erase_subscriber(ongoing, subscriber_id)

    def _warehouse_rows(self, subscriber_id: str) -> list[dict[str, Any]]:
        sql = in_dialect(WAREHOUSE_ROWS_SQL, self._dialect)
        return self._warehouse.query(sql, {"subscriber_id": subscriber_id})

    def _delete_subscriber(self, subscriber_id: str) -> bool:
        existed = self._subscribers.find(subscriber_id) is not None
        self._subscribers.delete(subscriber_id)
        return existed


def _erased_event(subscriber_id: str, now: float) -> AnalyticsEvent:
    """An audit row that an erasure happened, carrying no identifier of the person."""
    return AnalyticsEvent(
        event_id=stable_id(ev.ERASED, pseudonym(subscriber_id)),
        event_type=ev.ERASED,
        occurred_at=utc_iso(now),
        reason="gdpr-erasure",
    )
