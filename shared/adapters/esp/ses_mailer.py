"""SesMailer: the Mailer port over Amazon SES v2 (`sesv2` SendEmail with Content.Raw), via boto3.

One request per message: the raw MIME (our Message-ID, List-Unsubscribe and all) goes as it is;
correlation ids go as message tags where SES's tag alphabet allows (SES feedback also carries
the Message-ID header). `configuration_set` names the SES configuration set that publishes
events to SNS. Credentials: the access key settings when given, else boto3's standard chain
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ...). The client is built once, on first use, and
shared by all threads (boto3 clients are thread-safe); botocore's own retries are off because
throttling is the rate limiter's job.

Errors: TooManyRequestsException / Throttling / LimitExceededException (sending quota) ->
Throttled; MessageRejected / MailFromDomainNotVerifiedException / other 4xx -> permanent for
that message; AccountSuspended / SendingPaused, 5xx and connection failures -> TransientError;
rejected credentials and an unknown configuration set -> ConfigurationError. A TransientError
is raised when nothing in the chunk was accepted yet, else the rest of the chunk is transient.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from email.utils import parseaddr
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from shared.adapters.esp.chunk_results import ChunkResults
from shared.adapters.esp.correlation import ses_tags
from shared.domain.errors import ConfigurationError, Throttled, TransientError
from shared.ports import OutgoingEmail, SendResult

THROTTLING = frozenset(
    {"TooManyRequestsException", "Throttling", "ThrottlingException", "LimitExceededException"}
)
PAUSED = frozenset({"AccountSuspendedException", "SendingPausedException"})
BAD_CREDENTIALS = frozenset(
    {
        "AccessDeniedException",
        "ExpiredTokenException",
        "IncompleteSignatureException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)
_CLIENT_CONFIG = Config(
    retries={"total_max_attempts": 1, "mode": "standard"},  # no botocore retries: see above
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=16,
)


class SesMailer:
    name = "ses"

    def __init__(
        self,
        region: str,
        endpoint_url: str = "",
        access_key_id: str = "",
        secret_access_key: str = "",
        configuration_set: str = "",
    ) -> None:
        self._region = region
        self._endpoint_url = endpoint_url or None
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._configuration_set = configuration_set
        self._client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SesMailer({self._region}, {self._endpoint_url or 'AWS'})"

    def send(self, emails: Sequence[OutgoingEmail]) -> list[SendResult]:
        chunk = ChunkResults(emails)
        for index, email in enumerate(emails):
            try:
                self._send_one(chunk, index, email)
            except TransientError as exc:
                return chunk.interrupted(exc)
        return chunk.results()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _send_one(self, chunk: ChunkResults, index: int, email: OutgoingEmail) -> None:
        try:
            response = self._client_once().send_email(**self._request(email))
        except ClientError as exc:
            self._rejected(chunk, index, exc)
            return
        except NoCredentialsError as exc:
            raise ConfigurationError(
                "MAILPIPE_ESP=ses needs credentials: MAILPIPE_SES_ACCESS_KEY_ID and "
                "MAILPIPE_SES_SECRET_ACCESS_KEY, or the standard AWS_* variables"
            ) from exc
        except BotoCoreError as exc:  # connection refused, timeouts, ...
            raise TransientError(f"SES unreachable: {exc}") from exc
        chunk.sent([index], str(response.get("MessageId", "")))

    def _request(self, email: OutgoingEmail) -> dict[str, Any]:
        request: dict[str, Any] = {
            "FromEmailAddress": parseaddr(email.sender)[1],  # the raw From header keeps the name
            "Destination": {"ToAddresses": [email.recipient]},
            "Content": {"Raw": {"Data": email.raw}},
        }
        tags = ses_tags(email)
        if tags:
            request["EmailTags"] = tags
        if self._configuration_set:
            request["ConfigurationSetName"] = self._configuration_set
        return request

    def _rejected(self, chunk: ChunkResults, index: int, exc: ClientError) -> None:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        detail = f"SES {status} {code}: {error.get('Message', '')}"
        if code in THROTTLING:
            raise Throttled(detail)
        if code in BAD_CREDENTIALS:
            raise ConfigurationError(
                f"SES refused the credentials ({code}); check MAILPIPE_SES_ACCESS_KEY_ID and "
                "MAILPIPE_SES_SECRET_ACCESS_KEY (or the AWS_* variables) and MAILPIPE_SES_REGION"
            )
        if code == "NotFoundException" and self._configuration_set:
            raise ConfigurationError(f"{detail} (MAILPIPE_SES_CONFIGURATION_SET)")
        if code in PAUSED or status >= 500 or status == 0:
            raise TransientError(detail)
        chunk.permanent([index], detail)

    def _client_once(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> Any:
        credentials = {}
        if self._access_key_id:
            credentials = {
                "aws_access_key_id": self._access_key_id,
                "aws_secret_access_key": self._secret_access_key,
            }
        session = boto3.session.Session(region_name=self._region, **credentials)
        return session.client("sesv2", endpoint_url=self._endpoint_url, config=_CLIENT_CONFIG)
