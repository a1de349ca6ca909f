"""unsubscribe: RFC 8058 one-click. POST unsubscribes at once (no cookies, no login);
GET only shows a page with a button, because mail scanners follow GET links."""

import functions_framework

from shared.bootstrap import container
from shared.domain import template_names
from shared.entrypoints.http import check_body_size, client_ip, endpoint, json_response, wants_html
from shared.entrypoints.pages import render_message, render_page

DONE = "You are unsubscribed and will get no more mail from us."


@functions_framework.http
@endpoint
def unsubscribe(request):
    token = request.args.get("token") or ""
    service = container().unsubscribe
    if request.method == "GET":
        service.subscriber_for(token)  # InvalidToken -> 404 before showing a button
        return render_page(template_names.UNSUBSCRIBE_PAGE, token=token)
    if request.method != "POST":
        return json_response({"error": "use POST to unsubscribe"}, 405)
    check_body_size(request)
    token = token or request.form.get("token", "")
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    service.unsubscribe(token, "one-click" if one_click else "unsubscribe-page", client_ip(request))
    if wants_html(request):
        return render_message("Unsubscribed", DONE)
    return json_response({"status": "unsubscribed"})
