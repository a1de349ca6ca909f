"""The admin API's routes, framework-free: (method, path, query, body) -> JSON-ready answer.

functions/admin/main.py does the HTTP (headers, body parsing, status codes); this module checks
the key and maps each route to a campaign or import use case.

    GET  /campaigns[?status=sending]         list
    POST /campaigns                          create a draft (201)
    GET  /campaigns/<id>                     the campaign, its delivery counts, A/B results
    POST /campaigns/<id>/schedule            {"at": "2026-05-01T09:00:00Z"}
    POST /campaigns/<id>/send | pause | resume | cancel | resend-failed
    POST /campaigns/<id>/test                {"to": "me@...", "variant": "B"?, "variables": {...}?}
    POST /campaigns/<id>/preview             {"sample_size": 3?, "variables": {...}?}
                                             (variables: override the campaign's, this call only)
    POST /campaigns/<id>/pick-winner         {"variant": "B"}
    POST /campaigns/<id>/duplicate           a new draft with the same content (201)
    DELETE /campaigns/<id>                   delete a draft (409 for any other status)
    POST /subscribers/import[?confirmed_consent=true&filename=list.csv]   CSV body, imported
                                             at once (small files; the answer is the summary)
    POST /subscribers/imports?filename=list.csv   file body: upload (201) -> the import and its
                                             inspection (delimiter, mapping, preview, rejects)
    GET  /subscribers/imports                recent imports, newest first
    GET  /subscribers/imports/<id>           status and progress
    POST /subscribers/imports/<id>/inspect   {"mapping": {...}}? -> the preview with it
    POST /subscribers/imports/<id>/start     {"mapping": {...}?, "confirmed_consent": bool?} (202)
    GET  /subscribers/imports/<id>/rejects   the rejects CSV (line, email, reason)
"""

from __future__ import annotations

import hashlib
import hmac
import io
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from shared.domain.errors import InvalidInput, NotFound, Unauthorized
from shared.services.campaigns import CampaignService
from shared.services.subscriber_import import ImportOptions, SubscriberImport

ACTIONS = ("schedule", "send", "pause", "resume", "cancel", "test", "preview", "resend-failed",
           "pick-winner")  # fmt: skip
Answer = tuple[int, Any]


def authorized(authorization: str, api_key: str) -> None:
    """Unauthorized unless the header is `Bearer <api_key>` (compared in constant time)."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), api_key.encode()):
        raise Unauthorized("missing or wrong admin API key (Authorization: Bearer <key>)")


class AdminApi:
    def __init__(
        self, campaigns: CampaignService, importer: SubscriberImport, imports: Any = None
    ) -> None:
        self._campaigns = campaigns
        self._importer = importer
        self._imports = imports  # shared/services/imports.py ImportService

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        body: Callable[[], dict[str, Any]],
        raw: Callable[[], bytes],
    ) -> Answer:
        """Route one request; `body` parses a JSON body, `raw` gives the bytes (CSV)."""
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["campaigns"]:
            return self._campaign_route(method, parts[1:], query, body)
        if parts == ["subscribers", "import"] and method == "POST":
            return 200, self._import(raw(), query)
        if parts[:2] == ["subscribers", "imports"]:
            return self._imports_route(method, parts[2:], query, body, raw)
        raise NotFound(f"no admin route {method} {path}")

    def _imports_route(
        self,
        method: str,
        parts: list[str],
        query: Mapping[str, str],
        body: Callable[[], dict],
        raw: Callable[[], bytes],
    ) -> Answer:
        service = self._imports
        if not parts and method == "POST":
            job = service.upload(raw(), query.get("filename", "admin-api-upload.csv"))
            return 201, {"import": job.to_doc(), "inspection": service.inspect(job.id).to_doc()}
        if not parts and method == "GET":
            return 200, [job.to_doc() for job in service.recent(_limit(query))]
        if len(parts) == 1 and method == "GET":
            return 200, service.status(parts[0]).to_doc()
        if len(parts) == 2 and parts[1] == "inspect" and method == "POST":
            return 200, service.inspect(parts[0], _mapping(body())).to_doc()
        if len(parts) == 2 and parts[1] == "start" and method == "POST":
            fields = body()
            consent = fields.get("confirmed_consent", False) is True
            return 202, service.start(parts[0], _mapping(fields), consent).to_doc()
        if len(parts) == 2 and parts[1] == "rejects" and method == "GET":
            return 200, CsvAnswer(service.rejects(parts[0]))
        raise NotFound(f"no admin route {method} /subscribers/imports/{'/'.join(parts)}")

    def _campaign_route(
        self, method: str, parts: list[str], query: Mapping[str, str], body: Callable[[], dict]
    ) -> Answer:
        service = self._campaigns
        if not parts and method == "GET":
            statuses = [s for s in query.get("status", "").split(",") if s]
            return 200, [c.to_doc() for c in service.list_campaigns(statuses)]
        if not parts and method == "POST":
            return 201, service.create(body()).to_doc()
        if len(parts) == 1 and method == "GET":
            return 200, service.show(parts[0])
        if len(parts) == 1 and method == "DELETE":
            service.delete_draft(parts[0])
            return 200, {"deleted": parts[0]}
        if parts[1:] == ["duplicate"] and method == "POST":
            return 201, service.duplicate(parts[0]).to_doc()
        if len(parts) == 2 and parts[1] in ACTIONS and method == "POST":
            return 200, self._act(parts[0], parts[1], body())
        raise NotFound(f"no admin route {method} /campaigns/{'/'.join(parts)}")

    def _act(self, campaign_id: str, action: str, body: dict[str, Any]) -> Any:
        service = self._campaigns
        if action == "schedule":
            return service.schedule(campaign_id, body.get("at")).to_doc()
        if action == "send":
            return service.send_now(campaign_id).to_doc()
        if action == "resume":
            campaign, republished = service.resume(campaign_id)
            return {**campaign.to_doc(), "republished_batches": republished}
        if action in ("pause", "cancel"):
            return getattr(service, action)(campaign_id).to_doc()
        if action == "test":
            variant = body.get("variant")
            if variant is not None and not isinstance(variant, str):
                raise InvalidInput("variant must be a variant name", field="variant")
            to = str(body.get("to") or "")
            sent = service.test_send(campaign_id, to, variant, body.get("variables"))
            return {"queued": [{"to": e.recipient, "subject": e.subject,
                                "message_id": e.message_id} for e in sent]}  # fmt: skip
        if action == "preview":
            samples = _sample_size(body.get("sample_size", 3))
            report = service.preview(campaign_id, samples, body.get("variables"))
            return {**asdict(report), "ok": report.ok, "summary": report.summary()}
        if action == "resend-failed":
            return service.resend_failed(campaign_id)
        return service.pick_winner(campaign_id, str(body.get("variant") or "")).to_doc()

    def _import(self, data: bytes, query: Mapping[str, str]) -> dict[str, Any]:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            message = f"the CSV body is not UTF-8 ({exc.reason} at byte {exc.start})"
            raise InvalidInput(message, field="body") from exc
        options = ImportOptions(
            source_name=query.get("filename", "admin-api-upload.csv")[:200],
            file_hash=hashlib.sha256(data).hexdigest(),
            confirmed_consent=query.get("confirmed_consent", "").lower() in ("1", "true"),
        )
        return self._importer.run(io.StringIO(text, newline=""), options).to_doc()


class CsvAnswer(bytes):
    """An answer sent as text/csv rather than JSON."""


def _mapping(fields: dict[str, Any]) -> dict[str, str] | None:
    mapping = fields.get("mapping")
    if mapping is None:
        return None
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise InvalidInput("mapping must be an object of column -> field names", "mapping")
    return mapping


def _limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= 500:
        raise InvalidInput("limit must be a whole number from 1 to 500", "limit")
    return int(raw)


def _sample_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 20:
        raise InvalidInput("sample_size must be a whole number from 0 to 20", "sample_size")
    return value
