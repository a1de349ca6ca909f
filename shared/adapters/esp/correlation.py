"""What every provider attaches to a message so that its webhooks can be traced back.

SendGrid returns these as `custom_args`, Mailgun as `user-variables` (sent as `v:` fields), SES
as message tags (restricted to [A-Za-z0-9_-], so values that do not fit are left out; SES
feedback also carries the Message-ID header of the raw message). The webhook parsers read the
same names.
"""

from __future__ import annotations

import re

from shared.ports import OutgoingEmail

MESSAGE_ID = "message_id"
SUBSCRIBER_ID = "subscriber_id"
CAMPAIGN_ID = "campaign_id"
# Older batches carried the campaign in this header; OutgoingEmail.campaign_id replaced it.
CAMPAIGN_HEADER = "X-Mailpipe-Campaign-Id"

_SES_TAG_VALUE = re.compile(r"[A-Za-z0-9_-]{1,256}")


def campaign_id(email: OutgoingEmail) -> str:
    if email.campaign_id:
        return email.campaign_id
    for name, value in email.headers.items():
        if name.lower() == CAMPAIGN_HEADER.lower():
            return value
    return ""


def correlation_args(email: OutgoingEmail) -> dict[str, str]:
    """message_id, subscriber_id and campaign_id (each only when known), as strings."""
    args = {
        MESSAGE_ID: email.message_id,
        SUBSCRIBER_ID: email.subscriber_id,
        CAMPAIGN_ID: campaign_id(email),
    }
    return {k: v for k, v in args.items() if v}


def ses_tags(email: OutgoingEmail) -> list[dict[str, str]]:
    """The correlation args SES accepts as tags; message_id becomes its local part."""
    args = correlation_args(email)
    if MESSAGE_ID in args:
        args[MESSAGE_ID] = args[MESSAGE_ID].partition("@")[0]
    return [
        {"Name": name, "Value": value}
        for name, value in args.items()
        if _SES_TAG_VALUE.fullmatch(value)
    ]
