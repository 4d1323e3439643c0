"""The OpenAPI paths of what the dashboard reads beyond State Backed's API: a version's
diagram, an instance's pending timers and the dead letters (extensions; see
``_diagrams``, ``_timers`` and ``_dead_letters``). The
dashboard's static files are not API and are not listed."""

from __future__ import annotations

from typing import Any

NAME = {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,128}$"}
_ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(s): {"description": "error", "content": {"application/json": {"schema": _ERROR}}}
        for s in (400, 401, 403, 404, *statuses)
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": "ok", "content": {"application/json": {"schema": schema}}}


_ADDRESS = {
    "type": "object",
    "properties": {
        "machineName": {"type": "string"},
        "machineInstanceName": {"type": "string"},
        "sender": {"type": "string"},
    },
}
DEAD_LETTER = {
    "type": "object",
    "required": ["id", "createdAt", "to", "from", "event", "error", "attempts"],
    "properties": {
        "id": {"type": "integer"},
        "createdAt": {"type": "string", "format": "date-time"},
        "to": _ADDRESS,
        "from": _ADDRESS,
        "event": {"type": "object"},
        "error": {"type": "string"},
        "attempts": {"type": "integer"},
    },
}


def _names(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "in": "path", "required": True, "schema": NAME} for n in names]


def view_paths() -> dict[str, Any]:
    return {
        "/machines/{machine}/v/{version}/diagram": {
            "parameters": _names("machine", "version"),
            "get": {
                "operationId": "getVersionDiagram",
                "description": "Extension (machine-versions.read): the version's outline "
                "(states and labelled transitions), its mermaid stateDiagram-v2 and the "
                "mermaid name of each state id; `complete` is false for a version stored "
                "without its outline (drawn from its states only).",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["machineVersionId", "complete", "outline", "mermaid"],
                            "properties": {
                                "machineVersionId": {"type": "string"},
                                "complete": {"type": "boolean"},
                                "outline": {"type": "object"},
                                "mermaid": {"type": "string"},
                                "stateNames": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                            },
                        }
                    ),
                    **_errors(),
                },
            },
        },
        "/machines/{machine}/i/{instance}/timers": {
            "parameters": _names("machine", "instance"),
            "get": {
                "operationId": "listInstanceTimers",
                "description": "Extension (instances.admin): the instance's pending timers "
                "(after transitions, delayed sends), soonest first.",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["timers"],
                            "properties": {
                                "timers": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["id", "dueAt", "event"],
                                        "properties": {
                                            "id": {"type": "string"},
                                            "dueAt": {"type": "string", "format": "date-time"},
                                            "event": {"type": "object"},
                                        },
                                    },
                                }
                            },
                        }
                    ),
                    **_errors(),
                },
            },
        },
        "/dead-letters": {
            "get": {
                "operationId": "listDeadLetters",
                "description": "Extension (instances.admin): messages between the org's "
                "instances that exhausted their retries, oldest first (at most 100).",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["deadLetters"],
                            "properties": {"deadLetters": {"type": "array", "items": DEAD_LETTER}},
                        }
                    ),
                    **_errors(),
                },
            }
        },
        "/dead-letters/{id}/redeliver": {
            "parameters": [
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^-?[0-9]+$"},
                }
            ],
            "post": {
                "operationId": "redeliverDeadLetter",
                "description": "Extension (instances.admin): put the message back in its "
                "instance's inbox and take it off the list.",
                "responses": {"204": {"description": "redelivered"}, **_errors()},
            },
        },
    }
