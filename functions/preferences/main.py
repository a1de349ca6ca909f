"""preferences: the token-based preference center (lists, topics, frequency, or leave all)."""

from urllib.parse import quote

import functions_framework

from shared.bootstrap import container
from shared.domain import template_names
from shared.entrypoints.http import client_ip, endpoint, json_response, read_fields, wants_html
from shared.entrypoints.pages import render_message, render_page
from shared.services.preferences import TOPICS, PreferenceChange, choices


def _tracking(request, fields) -> bool:
    """An HTML form omits an unticked checkbox, so absent means off; JSON keeps it unless said."""
    default = True if request.mimetype == "application/json" else "off"
    return str(fields.get("tracking", default)).lower() in ("on", "true", "1", "yes")


@functions_framework.http
@endpoint
def preferences(request):
    token = request.args.get("token") or ""
    service = container().preferences
    if request.method == "GET":
        subscriber = service.subscriber(token)
        if not wants_html(request):
            return json_response(
                {
                    "lists": subscriber.lists,
                    "topics": subscriber.topics,
                    "frequency": subscriber.frequency,
                    "status": subscriber.status,
                }
            )
        return render_page(template_names.PREFERENCES_PAGE, token=token, subscriber=subscriber,
                           all_lists=service.lists.lists, all_topics=TOPICS)  # fmt: skip
    fields = read_fields(request)
    token = token or str(fields.get("token") or "")
    if fields.get("action") == "leave":
        service.leave_all(token, client_ip(request))
        message = "You left every list and will get no more mail from us."
    else:
        change = PreferenceChange(
            lists=service.lists.choose(fields.get("lists")),
            topics=choices(fields.get("topics"), TOPICS, "topics"),
            frequency=str(fields.get("frequency") or "all"),
            tracking=_tracking(request, fields),
        )
        service.update(token, change, client_ip(request))
        message = "Your preferences are saved."
    if wants_html(request):
        back = f"?token={quote(token)}" if fields.get("action") != "leave" else None
        return render_message("Saved", message, link=(back, "Back to your preferences"))
    return json_response({"status": "saved", "message": message})
