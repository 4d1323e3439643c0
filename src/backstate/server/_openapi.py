"""The OpenAPI document served at ``/openapi.json``: what the routes really accept and
return (checked by a schemathesis run in the tests)."""

from __future__ import annotations

from typing import Any

from ._openapi_extensions import NAME, _body, _errors, _json, extension_paths
from ._openapi_views import view_paths

ERROR = {
    "type": "object",
    "required": ["error", "code"],
    "properties": {
        "error": {"type": "string"},
        "code": {"type": "string"},
        "parameter": {"type": "string"},
    },
}
STATE_VALUE: dict[str, Any] = {"oneOf": [{"type": "string"}, {"type": "object"}]}
STATE = {
    "type": "object",
    "required": ["ts", "state", "publicContext", "tags", "done"],
    "properties": {
        "ts": {"type": "integer"},
        "state": STATE_VALUE,
        "publicContext": {},
        "tags": {"type": "array", "items": {"type": "string"}},
        "done": {"type": "boolean"},
    },
}
EVENT = {
    "oneOf": [
        {"type": "string"},
        {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}},
    ]
}
VERSION_INFO = {
    "type": "object",
    "required": ["id", "createdAt"],
    "properties": {
        "id": {"type": "string"},
        "createdAt": {"type": "string", "format": "date-time"},
        "clientInfo": {"type": ["string", "null"]},
    },
}
MACHINE_INFO = {
    "type": "object",
    "required": ["slug", "createdAt", "indexes"],
    "properties": {
        "slug": {"type": "string"},
        "createdAt": {"type": "string", "format": "date-time"},
        "indexes": {"type": "array", "items": {"type": "string"}},
        "currentVersion": VERSION_INFO,
    },
}


OPS = ("eq", "ne", "gt", "gte", "lt", "lte")
SELECTORS = {"type": "object", "additionalProperties": {"type": "string"}}
M = {"name": "machine", "in": "path", "required": True, "schema": NAME}
I = {"name": "instance", "in": "path", "required": True, "schema": NAME}  # noqa: E741
# backstate's extension (the IETF httpapi draft's header): applied once per key.
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "repeats with the same key and body get the first answer, unapplied",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
}
STATE_REF = {"$ref": "#/components/schemas/State"}


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/machines": {
            "get": {
                "operationId": "listMachines",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"machines": {"type": "array", "items": MACHINE_INFO}},
                        }
                    ),
                    **_errors(),
                },
            },
            "post": {
                "operationId": "createMachine",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["slug"],
                        "properties": {"slug": NAME, "indexes": {"type": "array", "items": NAME}},
                    }
                ),
                "responses": {"201": {"description": "created"}, **_errors(409)},
            },
        },
        "/machines/{machine}": {
            "parameters": [M],
            "get": {
                "operationId": "getMachine",
                "responses": {
                    "200": _json({"type": "object", "properties": {"machine": MACHINE_INFO}}),
                    **_errors(),
                },
            },
            "delete": {
                "operationId": "deleteMachine",
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {
                            "dangerDataWillBeDeletedForever": {"type": "boolean"},
                            "hmacSha256OfMachineNameWithMachineNameKey": {"type": "string"},
                        },
                    }
                ),
                "responses": {"204": {"description": "deleted"}, **_errors(409)},
            },
            "post": {
                "operationId": "createInstance",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["slug"],
                        "properties": {
                            "slug": NAME,
                            "context": {
                                "type": "object",
                                "description": "shallow-merged over the machine's initial context",
                            },
                            "input": {
                                "description": "backstate's extension: XState's input, what"
                                " the machine's context factory receives",
                            },
                            "machineVersionId": {"type": "string"},
                        },
                    }
                ),
                "responses": {"200": _json(STATE_REF), **_errors(409, 422)},
            },
        },
        "/machines/{machine}/v": {
            "parameters": [M],
            "get": {
                "operationId": "listVersions",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"versions": {"type": "array", "items": VERSION_INFO}},
                        }
                    ),
                    **_errors(),
                },
            },
            "post": {
                "operationId": "createVersion",
                "description": "An empty body provisionally creates a version (then upload and finalize); "
                "`{code}` creates it in one step from Python source.",
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {
                            "code": {"type": "string"},
                            "clientInfo": {"type": "string"},
                            "makeCurrent": {"type": "boolean"},
                            "indexSelectors": SELECTORS,
                        },
                    }
                ),
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["machineVersionId"],
                            "properties": {"machineVersionId": {"type": "string"}},
                        }
                    ),
                    **_errors(),
                },
            },
        },
        "/machines/{machine}/v/{signed}": {
            "parameters": [
                M,
                {"name": "signed", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "put": {
                "operationId": "finalizeVersion",
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {
                            "clientInfo": {"type": "string"},
                            "makeCurrent": {"type": "boolean"},
                            "indexSelectors": SELECTORS,
                        },
                    }
                ),
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["machineVersionId"],
                            "properties": {"machineVersionId": {"type": "string"}},
                        }
                    ),
                    **_errors(),
                },
            },
        },
        "/machines/{machine}/i": {
            "parameters": [M],
            "get": {
                "operationId": "listInstances",
                "parameters": [{"name": "cursor", "in": "query", "schema": {"type": "string"}}],
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"instances": {"type": "array"}}}
                    ),
                    **_errors(),
                },
            },
        },
        "/machines/{machine}/i/{instance}": {
            "parameters": [M, I],
            "get": {
                "operationId": "getInstance",
                "responses": {"200": _json(STATE_REF), **_errors()},
            },
            "delete": {
                "operationId": "deleteInstance",
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {
                            "dangerDataWillBeDeletedForever": {"type": "boolean"},
                            "hmacSha256OfMachineInstanceNameWithMachineNameKey": {"type": "string"},
                        },
                    }
                ),
                "responses": {"204": {"description": "deleted"}, **_errors()},
            },
        },
        "/machines/{machine}/i/{instance}/events": {
            "parameters": [M, I],
            "post": {
                "operationId": "sendEvent",
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": _body(
                    {"type": "object", "required": ["event"], "properties": {"event": EVENT}}
                ),
                "responses": {"200": _json(STATE_REF), **_errors(409, 422)},
            },
            "get": {
                "operationId": "listTransitions",
                "parameters": [
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^-?[0-9]+$"},
                    }
                ],
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"transitions": {"type": "array"}}}
                    ),
                    **_errors(),
                },
            },
        },
        "/machines/{machine}/i/{instance}/admin": {
            "parameters": [M, I],
            "get": {
                "operationId": "getInstanceAdmin",
                "responses": {"200": _json({"type": "object"}), **_errors()},
            },
        },
        "/machines/{machine}/i/{instance}/status": {
            "parameters": [M, I],
            "put": {
                "operationId": "setInstanceStatus",
                "requestBody": _body(
                    {"type": "object", "properties": {"status": {"enum": ["running", "paused"]}}}
                ),
                "responses": {"204": {"description": "set"}, **_errors()},
            },
        },
        "/machines/{machine}/i/{instance}/v": {
            "parameters": [M, I],
            "put": {
                "operationId": "setDesiredVersion",
                "description": "Upgrade at the next event (or at once with `upgradeNow`, an "
                "extension) through the shortest chain of migrations.",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["targetMachineVersionId"],
                        "properties": {
                            "targetMachineVersionId": NAME,
                            "upgradeNow": {"type": "boolean"},
                        },
                    }
                ),
                "responses": {"201": {"description": "recorded"}, **_errors(409)},
            },
        },
        "/machines/{machine}/i/{instance}/v/dry-run": {
            "parameters": [M, I],
            "post": {
                "operationId": "dryRunUpgrade",
                "description": "An extension: replay the instance's history against a version.",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["targetMachineVersionId"],
                        "properties": {"targetMachineVersionId": NAME},
                    }
                ),
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["migrationPath", "replayed", "divergedAt"],
                            "properties": {
                                "migrationPath": {"type": "array", "items": {"type": "string"}},
                                "replayed": {"type": "integer"},
                                "divergedAt": {"type": ["integer", "null"]},
                            },
                        }
                    ),
                    **_errors(),
                },
            },
        },
        "/machines/{machine}/migrations": {
            "parameters": [M],
            "post": {
                "operationId": "createMigration",
                "description": "Provisionally create a migration (then upload and finalize); "
                "`code` in the body counts as uploaded.",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["fromMachineVersionId", "toMachineVersionId"],
                        "properties": {
                            "fromMachineVersionId": NAME,
                            "toMachineVersionId": NAME,
                            "code": {"type": "string"},
                        },
                    }
                ),
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": [
                                "machineVersionMigrationId",
                                "codeUploadUrl",
                                "codeUploadFields",
                            ],
                            "properties": {
                                "machineVersionMigrationId": {"type": "string"},
                                "codeUploadUrl": {"type": "string"},
                                "codeUploadFields": {"type": "object"},
                            },
                        }
                    ),
                    **_errors(),
                },
            },
        },
        "/machines/{machine}/migrations/{signed}": {
            "parameters": [
                M,
                {"name": "signed", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "put": {
                "operationId": "finalizeMigration",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["machineVersionMigrationId"],
                            "properties": {"machineVersionMigrationId": {"type": "string"}},
                        }
                    ),
                    **_errors(),
                },
            },
        },
        "/machines/{machine}/indexes/{index}/query": {
            "parameters": [M, {"name": "index", "in": "path", "required": True, "schema": NAME}],
            "get": {
                "operationId": "queryIndex",
                "parameters": [
                    {"name": "op", "in": "query", "schema": {"enum": list(OPS)}},
                    {"name": "value", "in": "query", "schema": {"type": "string"}},
                    {"name": "type", "in": "query", "schema": {"enum": ["string", "number"]}},
                    {"name": "dir", "in": "query", "schema": {"enum": ["asc", "desc"]}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["instances"],
                            "properties": {
                                "instances": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["indexValue", "slug"],
                                        "properties": {
                                            "indexValue": {"type": ["string", "number"]},
                                            "slug": {"type": "string"},
                                        },
                                    },
                                },
                                "cursor": {"type": "string"},
                            },
                        }
                    ),
                    **_errors(),
                },
            },
        },
        "/logs": {
            "get": {
                "operationId": "getLogs",
                "parameters": [
                    {
                        "name": "from",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    },
                    {
                        "name": "to",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    },
                    {"name": "machine", "in": "query", "schema": NAME},
                    {"name": "instance", "in": "query", "schema": NAME},
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["maxTimestamp", "logs"],
                            "properties": {"logs": {"type": "array"}},
                        }
                    ),
                    **_errors(),
                },
            }
        },
    }
    paths.update(_identity_paths())
    paths["/http-api/{org}/machines/{machine}/{slug}"] = _http_api_path()
    paths.update(view_paths())
    for path, operations in extension_paths().items():
        paths.setdefault(path, {}).update(operations)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "backstate",
            "version": "1",
            "description": "State Backed's API, served by backstate.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR, "State": STATE},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
        "security": [{"bearer": []}],
    }


def _listing(name: str) -> dict[str, Any]:
    return _json(
        {
            "type": "object",
            "required": [name],
            "properties": {name: {"type": "array", "items": {"type": "object"}}},
        }
    )


def _identity_paths() -> dict[str, Any]:
    mapping = {"type": "object"}
    algs = {"type": "array", "items": {"type": "string"}, "minItems": 1}
    return {
        "/orgs": {
            "get": {"operationId": "listOrgs", "responses": {"200": _listing("orgs"), **_errors()}},
            "post": {
                "operationId": "createOrg",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "allowAnonymousAccess": {"type": "boolean"},
                        },
                    }
                ),
                "responses": {"200": _json({"type": "object", "required": ["id"]}), **_errors()},
            },
        },
        "/keys": {
            "get": {"operationId": "listKeys", "responses": {"200": _listing("keys"), **_errors()}},
            "post": {
                "operationId": "createKey",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "scopes": {"type": "array", "items": {"type": "string"}},
                            "use": {"enum": ["production", "ci"]},
                        },
                    }
                ),
                "responses": {
                    "200": _json({"type": "object", "required": ["id", "key"]}),
                    **_errors(),
                },
            },
        },
        "/keys/{key_id}": {
            "parameters": [
                {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "delete": {
                "operationId": "deleteKey",
                "responses": {"204": {"description": "deleted"}, **_errors()},
            },
        },
        "/idps": {
            "get": {"operationId": "listIdps", "responses": {"200": _listing("idps"), **_errors()}},
            "post": {
                "operationId": "upsertIdp",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["algs", "mapping"],
                        "properties": {
                            "aud": {"type": "string"},
                            "iss": {"type": "string"},
                            "algs": algs,
                            "key": {"type": "string"},
                            "jwksUrl": {"type": "string"},
                            "mapping": mapping,
                        },
                    }
                ),
                "responses": {"204": {"description": "saved"}, **_errors()},
            },
            "delete": {
                "operationId": "deleteIdp",
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {"aud": {"type": "string"}, "iss": {"type": "string"}},
                    }
                ),
                "responses": {"204": {"description": "deleted"}, **_errors()},
            },
        },
        "/token-providers": {
            "get": {
                "operationId": "listTokenProviders",
                "responses": {"200": _listing("tokenProviders"), **_errors()},
            },
            "post": {
                "operationId": "upsertTokenProvider",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["keyId", "service", "mapping"],
                        "properties": {
                            "keyId": {"type": "string"},
                            "service": NAME,
                            "mapping": mapping,
                        },
                    }
                ),
                "responses": {"204": {"description": "saved"}, **_errors()},
            },
        },
        "/token-providers/{service}": {
            "parameters": [{"name": "service", "in": "path", "required": True, "schema": NAME}],
            "delete": {
                "operationId": "deleteTokenProvider",
                "responses": {"204": {"description": "deleted"}, **_errors()},
            },
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "description": "Liveness: the process answers (no token).",
                "security": [],
                "responses": {"200": _json(_STATUS)},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "ready",
                "description": "Readiness: the store answers within 3 s (no token).",
                "security": [],
                "responses": {"200": _json(_STATUS), **_errors(503)},
            }
        },
    }


_STATUS = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}


def _http_api_path() -> dict[str, Any]:
    """The HTTP API mapper: no token; the machine's handler decides, and its response
    mapper chooses the status and body (docs/http_api.md)."""
    answer = {
        "description": "what the machine's response mapper returned",
        "content": {"application/json": {"schema": {}}, "text/plain": {"schema": {}}},
    }
    operation = {
        "security": [],
        "requestBody": {"required": False, "content": {"*/*": {"schema": {}}}},
        "responses": {
            "2XX": answer,
            "3XX": answer,
            **_errors(409, 418),
            "4XX": answer,
            "5XX": answer,
        },
    }
    return {
        "parameters": [
            {"name": "org", "in": "path", "required": True, "schema": {"type": "string"}},
            M,
            {"name": "slug", "in": "path", "required": True, "schema": NAME},
        ],
        **{
            method: {**operation, "operationId": f"httpApi{method.capitalize()}"}
            for method in ("get", "post", "put", "delete", "patch")
        },
    }
