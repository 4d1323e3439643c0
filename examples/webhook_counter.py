"""A counter fed by a webhook through the HTTP API mapper (docs/http_api.md).

``POST /http-api/<org>/machines/webhook-counter/increment?counter=<name>`` with the
header ``x-webhook-secret: $WEBHOOK_COUNTER_SECRET`` and an optional JSON body
``{"by": n}`` adds ``n`` (default 1) to the counter instance ``<name>`` (default
``default``), creating it on first use. The response is ``{"count": ...}``; once a
counter reaches ``GOAL`` it is done and the response also carries its output,
``{"count": ..., "result": {"total": ...}}``.

The handler authenticates the request itself (no JWT on this route): a missing or wrong
secret, or no secret configured on the server, fails with 401 before anything is created
or sent. Clients with a token may read counters (``allow_read``); only the webhook
(``authContext = {"sub": "webhook"}``) may write.

Deploy it with ``backstate serve --trusted --deploy examples/webhook_counter.py`` and
the environment variable ``WEBHOOK_COUNTER_SECRET`` set: it reads the server's
environment, which machine code run sandboxed (the default) never sees, so without
``--trusted`` every request is refused with 401.
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from backstate.chart import assign, setup

GOAL = 10
SECRET_HEADER = "x-webhook-secret"


def _amount(context: dict[str, Any], event: dict[str, Any]) -> int:
    by = event.get("by", 1)
    return by if isinstance(by, int) and not isinstance(by, bool) and by > 0 else 1


machine = setup(
    actions={
        "add": assign({"public": lambda c, e: {"count": c["public"]["count"] + _amount(c, e)}})
    },
    guards={"reachesGoal": lambda c, e: c["public"]["count"] + _amount(c, e) >= GOAL},
).create_machine(
    {
        "id": "webhook-counter",
        "initial": "counting",
        "context": {"public": {"count": 0}},
        "states": {
            "counting": {
                "on": {
                    "increment": [
                        {"guard": "reachesGoal", "target": "reached", "actions": "add"},
                        {"actions": "add"},
                    ]
                }
            },
            "reached": {"type": "final"},
        },
        "output": lambda c, e: {"total": c["public"]["count"]},
    }
)


def allow_read(**_: Any) -> bool:
    return True


def allow_write(*, auth_context: dict[str, Any], **_: Any) -> bool:
    return auth_context.get("sub") == "webhook"


class Unauthorized(Exception):
    status_code = 401  # the mapper answers with this status instead of 400


def handle_increment(request: dict[str, Any]) -> dict[str, Any]:
    secret = os.environ.get("WEBHOOK_COUNTER_SECRET", "")
    given = request["headers"].get(SECRET_HEADER, "")
    if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        raise Unauthorized(f"wrong or missing {SECRET_HEADER}")
    body = request["body"] if isinstance(request["body"], dict) else {}
    return {
        "machineInstanceName": request["query"].get("counter", "default"),
        "event": {"type": "increment", "by": body.get("by", 1)},
        "authContext": {"sub": "webhook"},
        "initialContext": {},  # create on first use, with the machine's own context
    }


def respond(outcome: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"count": outcome["context"]["public"]["count"]}
    if outcome["result"] is not None:
        body["result"] = outcome["result"]
    return {"statusCode": 200, "headers": {"cache-control": "no-store"}, "body": body}


http_api = {"increment": {"handler": handle_increment, "response_mapper": respond}}
