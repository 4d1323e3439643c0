"""The OpenAPI operations of backstate's extensions to State Backed's API that are not
views (see ``_openapi_views``): migrations listed, read and deleted, indexes added to a
machine with their backfill's progress (``_indexes``), an org's secrets (``_secrets``),
and the token exchange (``_identity``). Merged into the document by path. Its parts
(``NAME``, ``_errors``, ``_json``, ``_body``) are the document's too: ``_openapi``
imports them from here."""

from __future__ import annotations

from typing import Any

NAME = {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,128}$"}
_ERROR = {"$ref": "#/components/schemas/Error"}
_TIME = {"type": "string", "format": "date-time"}


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(s): {"description": "error", "content": {"application/json": {"schema": _ERROR}}}
        for s in (400, 401, 403, 404, 413, *statuses)
    }


def _json(schema: dict[str, Any], description: str = "ok") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _object(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


MIGRATION = _object(
    ["id", "fromMachineVersionId", "toMachineVersionId", "createdAt"],
    id={"type": "string"},
    fromMachineVersionId={"type": "string"},
    toMachineVersionId={"type": "string"},
    createdAt=_TIME,
)
INDEX = _object(
    ["name", "selector", "state"],
    name={"type": "string"},
    selector={"type": ["string", "null"]},
    state={"enum": ["backfilling", "ready", "failed"]},
    done={"type": "integer"},
    total={"type": "integer"},
    skipped={"type": "integer"},
    skipNote={"type": ["string", "null"]},
    error={"type": ["string", "null"]},
    createdAt=_TIME,
    updatedAt=_TIME,
)
_TOKEN_ERROR = {
    "description": "RFC 6749 error, with backstate's finer code",
    "content": {
        "application/json": {
            "schema": _object(["error"], error={"type": "string"}, code={"type": "string"})
        }
    },
}


def extension_paths() -> dict[str, Any]:
    """Operations by path (a path may also have State Backed's own operations)."""
    migration = {"name": "signed", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/machines/{machine}/migrations": {
            "get": {
                "operationId": "listMigrations",
                "description": "Extension (machine-versions.read): the machine's migrations.",
                "responses": {
                    "200": _json(
                        _object(["migrations"], migrations={"type": "array", "items": MIGRATION})
                    ),
                    **_errors(),
                },
            },
        },
        "/machines/{machine}/migrations/{signed}": {
            "get": {
                "operationId": "getMigration",
                "description": "Extension (machine-versions.read): a migration and its code.",
                "parameters": [migration],
                "responses": {
                    "200": _json(
                        {
                            "allOf": [MIGRATION, _object(["code"], code={"type": "string"})],
                        }
                    ),
                    **_errors(),
                },
            },
            "delete": {
                "operationId": "deleteMigration",
                "description": "Extension (machine-versions.write): a migration deleted (a "
                "corrected one may then be uploaded for the same pair of versions).",
                "parameters": [migration],
                "responses": {"204": {"description": "deleted"}, **_errors()},
            },
        },
        "/machines/{machine}/indexes": {
            "parameters": [{"name": "machine", "in": "path", "required": True, "schema": NAME}],
            "get": {
                "operationId": "listIndexes",
                "description": "Extension (machines.read): the machine's indexes; those added "
                "to a machine with instances with their backfill's progress.",
                "responses": {
                    "200": _json(_object(["indexes"], indexes={"type": "array", "items": INDEX})),
                    **_errors(),
                },
            },
            "post": {
                "operationId": "addIndex",
                "description": "Extension (machines.write): an index added; its machine's "
                "instances are backfilled in the background (queries answer 409 "
                "index-not-ready until it is ready).",
                "requestBody": _body(
                    _object(["name", "selector"], name=NAME, selector={"type": "string"})
                ),
                "responses": {
                    "201": _json(_object(["index"], index=INDEX), "added"),
                    **_errors(409),
                },
            },
        },
        "/machines/{machine}/indexes/{index}": {
            "parameters": [
                {"name": "machine", "in": "path", "required": True, "schema": NAME},
                {"name": "index", "in": "path", "required": True, "schema": NAME},
            ],
            "get": {
                "operationId": "getIndex",
                "description": "Extension (machines.read): an index and its backfill.",
                "responses": {"200": _json(_object(["index"], index=INDEX)), **_errors()},
            },
        },
        "/secrets": {
            "get": {
                "operationId": "listSecrets",
                "description": "Extension (org.secrets.admin): the org's secrets' names "
                "(values are never returned).",
                "responses": {
                    "200": _json(
                        _object(
                            ["secrets"],
                            secrets={
                                "type": "array",
                                "items": _object(
                                    ["name", "updatedAt"], name={"type": "string"}, updatedAt=_TIME
                                ),
                            },
                        )
                    ),
                    **_errors(),
                },
            },
        },
        "/secrets/{name}": {
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": NAME}],
            "put": {
                "operationId": "setSecret",
                "description": "Extension (org.secrets.admin): a secret set, stored "
                "encrypted; effects and services read it with backstate.runtime.secret.",
                "requestBody": _body(_object(["value"], value={"type": "string"})),
                "responses": {"204": {"description": "set"}, **_errors(409)},
            },
            "delete": {
                "operationId": "deleteSecret",
                "description": "Extension (org.secrets.admin): a secret deleted.",
                "responses": {"204": {"description": "deleted"}, **_errors()},
            },
        },
        "/tokens": {
            "post": {
                "operationId": "exchangeToken",
                "description": "RFC 8693 token exchange (State Backed's): an identity "
                "provider's token for a backstate token.",
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        _object(["access_token"], access_token={"type": "string"}),
                    ),
                    "400": _TOKEN_ERROR,
                    "401": _TOKEN_ERROR,
                    "403": _TOKEN_ERROR,
                    "413": _TOKEN_ERROR,
                },
            },
        },
    }
