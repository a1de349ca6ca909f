"""The path a public HTTP function answers, whether or not its route prefix was stripped.

The same function code is reached three ways, and only some of them strip the function's local
route prefix (shared/topology.py `Function.route`, e.g. /t for tracking):
- locally, the runner mounts each function under its prefix (DispatcherMiddleware strips it);
- on GCP, the function's own cloudfunctions.net or run.app URL has no prefix at all;
- behind the HTTPS load balancer terraform/lb.tf creates, the full path arrives (/t/o/<token>,
  /webhooks/sendgrid): the URL map routes by prefix and does not rewrite the path.
So every function reads its path through `path_below_route`, and answers all three alike.
"""

from __future__ import annotations

import flask

from shared import topology


def path_below_route(request: flask.Request, function_name: str) -> str:
    """The request path with the function's route prefix taken off when it is there:
    "/t/o/abc" and "/o/abc" are both "/o/abc" for tracking; "/t" alone is "/"."""
    prefix = topology.function(function_name).route or ""
    path = request.path or "/"
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        return path[len(prefix) :] or "/"
    return path
