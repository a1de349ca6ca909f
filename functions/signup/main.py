"""signup: GET shows the form; POST (JSON or form) accepts a signup with 202 (double opt-in)."""

import functions_framework

from shared.bootstrap import container
from shared.domain import template_names
from shared.entrypoints.http import client_ip, endpoint, json_response, read_fields, wants_html
from shared.entrypoints.pages import render_message, render_page
from shared.services.signup import CONSENT_TEXTS, FORM_VERSION, SignupForm

ACCEPTED = "Thanks! Check your inbox for a link to confirm your subscription."


@functions_framework.http
@endpoint
def signup(request):
    if request.method == "GET":
        lists = container().list_catalog
        joins = [lists.display_name(name) for name in lists.signup_defaults]
        return render_page(template_names.SIGNUP_PAGE, form_version=FORM_VERSION,
                           consent_text=CONSENT_TEXTS[FORM_VERSION], joins=joins)  # fmt: skip
    if request.method != "POST":
        return json_response({"error": "use GET for the form or POST to sign up"}, 405)
    fields = read_fields(request)
    container().signup.signup(
        SignupForm(
            email=fields.get("email"),
            first_name=fields.get("first_name", ""),
            lists=fields.get("lists"),
            source=str(fields.get("source") or "form")[:50],
            ip=client_ip(request),
            user_agent=request.headers.get("User-Agent", ""),
            form_version=str(fields.get("form_version") or FORM_VERSION)[:50],
            consent_text=str(fields.get("consent_text") or "")[:2000],
            honeypot=str(fields.get("website") or ""),
        )
    )
    if wants_html(request):
        return render_message("Almost there", ACCEPTED, 202)
    return json_response({"status": "accepted", "message": ACCEPTED}, 202)
