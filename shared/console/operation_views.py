"""Operations: dead letters per subscription, listed, shown, replayed or purged, as
`mailpipe dlq` does (same port, same decoding, same words)."""

from __future__ import annotations

from typing import Any

import flask

from shared.console.render import Routes, container, render
from shared.domain.errors import NotFound
from shared.services.dead_letters import readable_payload

LIMIT = 100


routes = Routes()


def register(bp: flask.Blueprint) -> None:
    routes.register(bp)


@routes.get("/dead-letters")
def dead_letters() -> str:
    counts = container().dead_letters.counts()
    return render("dead_letters.html", "dead-letters", counts=sorted(counts.items()),
                  total=sum(counts.values()))  # fmt: skip


@routes.get("/dead-letters/<subscription>")
def dead_letter_list(subscription: str) -> str:
    letters = container().dead_letters
    found = letters.list(subscription, LIMIT)
    total = letters.counts().get(subscription, len(found))
    return render("dead_letter_list.html", "dead-letters", subscription=subscription,
                  letters=found, total=total)  # fmt: skip


@routes.get("/dead-letters/<subscription>/<message_id>")
def dead_letter(subscription: str, message_id: str) -> str:
    found = {d.message_id: d for d in container().dead_letters.list(subscription, 10_000)}
    if message_id not in found:
        raise NotFound(f"no dead letter {message_id} on {subscription}")
    letter = found[message_id]
    return render("dead_letter.html", "dead-letters", letter=letter,
                  payload=readable_payload(letter))  # fmt: skip


@routes.post("/dead-letters/<subscription>/replay")
def replay_dead_letters(subscription: str) -> Any:
    letters = container().dead_letters
    moved = letters.replay(subscription, _ids())
    left = letters.counts().get(subscription, 0)
    flask.flash(f"Replayed {moved} dead letters on {subscription}; {left} left.")
    return flask.redirect(flask.url_for("console.dead_letter_list",
                                        subscription=subscription), 303)  # fmt: skip


@routes.post("/dead-letters/<subscription>/purge")
def purge_dead_letters(subscription: str) -> Any:
    if flask.request.form.get("confirm") != "yes":
        flask.flash("Tick the box to confirm: purged dead letters are gone for good.", "error")
    else:
        letters = container().dead_letters
        removed = letters.purge(subscription, _ids())
        left = letters.counts().get(subscription, 0)
        flask.flash(f"Purged {removed} dead letters on {subscription}; {left} left.")
    return flask.redirect(flask.url_for("console.dead_letter_list",
                                        subscription=subscription), 303)  # fmt: skip


def _ids() -> list[str] | None:
    """The message ids posted (the `id` fields); None means all of the subscription's."""
    return flask.request.form.getlist("id") or None
