"""confirm: the double opt-in link. GET /confirm/?token=... confirms and shows a page."""

import functions_framework

from shared.bootstrap import container
from shared.domain.errors import InvalidToken
from shared.entrypoints.http import client_ip, endpoint, json_response, wants_html
from shared.entrypoints.pages import render_message


@functions_framework.http
@endpoint(max_body=0)
def confirm(request):
    token = request.args.get("token") or ""
    try:
        container().confirmation.confirm(
            token, client_ip(request), request.headers.get("User-Agent", "")
        )
    except InvalidToken as exc:
        if wants_html(request):
            return render_message("This link does not work", str(exc), 404)
        return json_response({"error": str(exc)}, 404)
    if wants_html(request):
        return render_message("You're in!", "Your subscription is confirmed. Welcome aboard.")
    return json_response({"status": "confirmed"})
