"""Every route of State Backed's API (as backstate serves it) as a flow of ``Call``s.

No I/O happens here: ``Client`` and ``AsyncClient`` run these flows. Paths, bodies and
answers follow State Backed's API (shared/reference/statebacked.md section 2), plus
backstate's one-step version upload (``POST /machines/{m}/v {code}``).
"""

from __future__ import annotations

import base64
import dataclasses
import gzip as gzip_module
import hashlib
import hmac
import itertools
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote

from ._calls import Call, Flow, Upload, nothing, single
from ._errors import ApiError, Conflict, NotFound
from ._models import (
    AdminState,
    CreatedKey,
    CreatedOrg,
    DeadLetter,
    Event,
    IdentityProviderInfo,
    IndexEntry,
    IndexInfo,
    IndexValue,
    InstanceInfo,
    KeyInfo,
    LogEntry,
    Logs,
    MachineInfo,
    MachineVersionInfo,
    MigrationInfo,
    OrgInfo,
    Page,
    ProvisionalUpload,
    State,
    Timer,
    TokenProviderInfo,
    Transition,
    UpgradeReport,
    iso,
)

T = TypeVar("T")

TOKEN_EXCHANGE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_AUDIENCE_PREFIX = "https://tokens.statebacked.dev"
CODE_CONTENT_TYPE = "text/x-python"

InstanceStatus = Literal["running", "paused"]
QueryOp = Literal["eq", "ne", "gt", "gte", "lt", "lte"]
ContextSource = Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None


def _p(name: str) -> str:
    return quote(name, safe="")


def _cursor(cursor: str | None) -> dict[str, str]:
    return {"cursor": cursor} if cursor else {}


def _page(key: str, parse: Callable[[dict[str, Any]], Any]) -> Callable[[Any], Page[Any]]:
    def read(body: Any) -> Page[Any]:
        return Page([parse(item) for item in body.get(key) or ()], body.get("cursor") or None)

    return read


def confirmation_hmac(key: str, data: str) -> str:
    """State Backed's delete confirmation: base64url(HMAC-SHA256(key, data)), unpadded."""
    digest = hmac.new(key.encode("utf-8"), data.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


# -- machines -------------------------------------------------------------------------------


def list_machines(cursor: str | None) -> Flow[Page[MachineInfo]]:
    return single(
        Call("GET", "/machines", _page("machines", MachineInfo.from_json), _cursor(cursor))
    )


def get_machine(machine: str) -> Flow[MachineInfo]:
    return single(
        Call(
            "GET",
            f"/machines/{_p(machine)}",
            lambda body: MachineInfo.from_json(body["machine"], slug=machine),
        )
    )


def create_machine(machine: str, indexes: Sequence[str] | None) -> Flow[None]:
    body: dict[str, Any] = {"slug": machine}
    if indexes:
        body["indexes"] = list(indexes)
    return single(Call("POST", "/machines", nothing, json=body))


def confirm_deletion(flag: object) -> None:
    """Deletes take ``danger_data_will_be_deleted_forever=True``, as State Backed's
    ``{dangerDataWillBeDeletedForever: true}``."""
    if flag is not True:
        raise ValueError("confirm with danger_data_will_be_deleted_forever=True")


def delete_machine(machine: str, confirmed: object) -> Flow[None]:
    confirm_deletion(confirmed)
    body = {
        "dangerDataWillBeDeletedForever": True,
        "hmacSha256OfMachineNameWithMachineNameKey": confirmation_hmac(machine, machine),
    }
    return single(Call("DELETE", f"/machines/{_p(machine)}", nothing, json=body))


# -- machine versions -----------------------------------------------------------------------


def _version_id(body: Any) -> str:
    return str(body["machineVersionId"])


def _version_options(
    client_info: str | None, make_current: bool, index_selectors: Mapping[str, str] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"makeCurrent": make_current}
    if client_info is not None:
        body["clientInfo"] = client_info
    if index_selectors is not None:
        body["indexSelectors"] = dict(index_selectors)
    return body


def list_versions(machine: str, cursor: str | None) -> Flow[Page[MachineVersionInfo]]:
    return single(
        Call(
            "GET",
            f"/machines/{_p(machine)}/v",
            _page("versions", MachineVersionInfo.from_json),
            _cursor(cursor),
        )
    )


def create_version(
    machine: str,
    code: str,
    client_info: str | None,
    make_current: bool,
    index_selectors: Mapping[str, str] | None,
) -> Flow[str]:
    """backstate's one-step upload: the source in the body."""
    body = {"code": code, **_version_options(client_info, make_current, index_selectors)}
    return single(Call("POST", f"/machines/{_p(machine)}/v", _version_id, json=body))


def _provisional(id_field: str, gzip: bool) -> Callable[[Any], ProvisionalUpload]:
    def read(body: Any) -> ProvisionalUpload:
        fields = body.get("codeUploadFields") or {}
        return ProvisionalUpload(
            str(body[id_field]),
            str(body["codeUploadUrl"]),
            {k: str(v) for k, v in fields.items()},
            gzip,
        )

    return read


def provisionally_create_version(machine: str, gzip: bool) -> Flow[ProvisionalUpload]:
    return single(
        Call(
            "POST",
            f"/machines/{_p(machine)}/v",
            _provisional("machineVersionId", gzip),
            {"gzip": ""} if gzip else {},
        )
    )


def upload_code(upload: ProvisionalUpload, code: str | bytes) -> Flow[None]:
    """The multipart POST of a presigned upload: every upload field, the content type
    (and encoding), then the file as ``file``. The upload URL needs no token."""
    data = code.encode("utf-8") if isinstance(code, str) else code
    fields = {**upload.code_upload_fields, "content-type": CODE_CONTENT_TYPE}
    if upload.gzip:
        if data[:2] != b"\x1f\x8b":
            data = gzip_module.compress(data)
        fields["content-encoding"] = "gzip"
    part = Upload("machine.py", data, CODE_CONTENT_TYPE)
    return single(
        Call("POST", upload.code_upload_url, nothing, form=fields, file=part, authenticated=False)
    )


def finalize_version(
    machine: str,
    signed_id: str,
    client_info: str | None,
    make_current: bool,
    index_selectors: Mapping[str, str] | None,
) -> Flow[str]:
    return single(
        Call(
            "PUT",
            f"/machines/{_p(machine)}/v/{_p(signed_id)}",
            _version_id,
            json=_version_options(client_info, make_current, index_selectors),
        )
    )


# -- migrations -----------------------------------------------------------------------------


def provisionally_create_migration(
    machine: str, from_version_id: str, to_version_id: str, gzip: bool
) -> Flow[ProvisionalUpload]:
    body = {"fromMachineVersionId": from_version_id, "toMachineVersionId": to_version_id}
    return single(
        Call(
            "POST",
            f"/machines/{_p(machine)}/migrations",
            _provisional("machineVersionMigrationId", gzip),
            {"gzip": ""} if gzip else {},
            json=body,
        )
    )


def _migration_id(body: Any) -> str:
    # The spec names the property both machineVersionMigrationId and machineVersionId.
    return str(body.get("machineVersionMigrationId") or body["machineVersionId"])


def finalize_migration(machine: str, signed_id: str) -> Flow[str]:
    return single(Call("PUT", f"/machines/{_p(machine)}/migrations/{_p(signed_id)}", _migration_id))


def add_index(machine: str, name: str, selector: str) -> Flow[IndexInfo]:
    return single(
        Call(
            "POST",
            f"/machines/{_p(machine)}/indexes",
            lambda body: IndexInfo.from_json(body["index"]),
            json={"name": name, "selector": selector},
        )
    )


def list_indexes(machine: str) -> Flow[list[IndexInfo]]:
    return single(
        Call(
            "GET",
            f"/machines/{_p(machine)}/indexes",
            lambda body: [IndexInfo.from_json(i) for i in body["indexes"]],
        )
    )


def get_index(machine: str, name: str) -> Flow[IndexInfo]:
    return single(
        Call(
            "GET",
            f"/machines/{_p(machine)}/indexes/{_p(name)}",
            lambda body: IndexInfo.from_json(body["index"]),
        )
    )


def list_migrations(machine: str) -> Flow[list[MigrationInfo]]:
    return single(
        Call(
            "GET",
            f"/machines/{_p(machine)}/migrations",
            lambda body: [MigrationInfo.from_json(m) for m in body["migrations"]],
        )
    )


def get_migration(machine: str, migration_id: str) -> Flow[MigrationInfo]:
    path = f"/machines/{_p(machine)}/migrations/{_p(migration_id)}"
    return single(Call("GET", path, MigrationInfo.from_json))


def delete_migration(machine: str, migration_id: str) -> Flow[None]:
    path = f"/machines/{_p(machine)}/migrations/{_p(migration_id)}"
    return single(Call("DELETE", path, nothing))


def create_migration(
    machine: str, from_version_id: str, to_version_id: str, code: str | bytes, gzip: bool
) -> Flow[str]:
    upload = yield from provisionally_create_migration(
        machine, from_version_id, to_version_id, gzip
    )
    yield from upload_code(upload, code)
    return (yield from finalize_migration(machine, upload.id))


# -- instances ------------------------------------------------------------------------------


def _instance(machine: str, instance: str) -> str:
    return f"/machines/{_p(machine)}/i/{_p(instance)}"


def create_instance(
    machine: str,
    instance: str,
    context: Mapping[str, Any] | None,
    machine_version_id: str | None,
    idempotency_key: str | None = None,
    retries: int = 0,
    input: Any = None,
) -> Flow[State]:
    body: dict[str, Any] = {"slug": instance}
    if context is not None:
        body["context"] = dict(context)
    if input is not None:
        body["input"] = input
    if machine_version_id is not None:
        body["machineVersionId"] = machine_version_id
    headers = _idempotency(idempotency_key, retries)
    call = Call("POST", f"/machines/{_p(machine)}", State.from_json, json=body, headers=headers)
    return _retried(call, retries if headers else 0)


def get_instance(machine: str, instance: str) -> Flow[State]:
    return single(Call("GET", _instance(machine, instance), State.from_json))


def get_or_create_instance(
    machine: str,
    instance: str,
    context: ContextSource,
    machine_version_id: str | None,
    retries: int = 0,
) -> Flow[State]:
    """State Backed's getOrCreate: get; on 404 create; if another request created it
    meanwhile (409), get again. A callable ``context`` is called only to create."""
    try:
        return (yield from get_instance(machine, instance))
    except NotFound:
        pass
    initial = context() if callable(context) else context
    try:
        return (
            yield from create_instance(
                machine, instance, initial, machine_version_id, None, retries
            )
        )
    except Conflict:
        return (yield from get_instance(machine, instance))


def send_event(
    machine: str,
    instance: str,
    event: Event,
    idempotency_key: str | None = None,
    retries: int = 0,
) -> Flow[State]:
    headers = _idempotency(idempotency_key, retries)
    path = f"{_instance(machine, instance)}/events"
    call = Call("POST", path, State.from_json, json={"event": event}, headers=headers)
    return _retried(call, retries if headers else 0)


# Waits before a create or an event is sent again under its idempotency key.
RETRY_DELAYS_S = (0.25, 1.0, 4.0)


def _idempotency(key: str | None, retries: int) -> dict[str, str]:
    """The ``Idempotency-Key`` header: the caller's key, else one of the client's own
    when it may retry (so its retries cannot apply the request twice)."""
    if key is None and retries:
        key = str(uuid.uuid4())
    return {} if key is None else {"idempotency-key": key}


def _retried(call: Call[T], retries: int) -> Flow[T]:
    """``call``, sent again (the same request, so the same key) up to ``retries`` more
    times while it gets no answer, a 502/503/504 or 409 ``idempotency-key-in-use``."""
    for attempt in itertools.count():
        try:
            return (yield from call)
        except ApiError as error:
            worth = error.status in (0, 502, 503, 504) or error.code == "idempotency-key-in-use"
            if attempt >= retries or not worth:
                raise
        call = dataclasses.replace(call, pause_s=RETRY_DELAYS_S[min(attempt, 2)])
    raise AssertionError("unreachable")


def list_instances(machine: str, cursor: str | None) -> Flow[Page[InstanceInfo]]:
    return single(
        Call(
            "GET",
            f"/machines/{_p(machine)}/i",
            _page("instances", InstanceInfo.from_json),
            _cursor(cursor),
        )
    )


def query_index(
    machine: str,
    index: str,
    op: QueryOp | None,
    value: IndexValue | None,
    direction: Literal["asc", "desc"] | None,
    limit: int | None,
    cursor: str | None,
) -> Flow[Page[IndexEntry]]:
    if (op is None) != (value is None):
        raise ValueError("give op and value together")
    params = _cursor(cursor)
    if op is not None and value is not None:
        params["op"] = op
        if isinstance(value, str):
            params["value"] = value
        else:  # compared as a number: backstate indexes numbers too
            params.update(value=repr(float(value)), type="number")
    if direction is not None:
        params["dir"] = direction
    if limit is not None:
        params["limit"] = str(limit)
    return single(
        Call(
            "GET",
            f"/machines/{_p(machine)}/indexes/{_p(index)}/query",
            _page("instances", IndexEntry.from_json),
            params,
        )
    )


def list_transitions(machine: str, instance: str, cursor: str | None) -> Flow[Page[Transition]]:
    return single(
        Call(
            "GET",
            f"{_instance(machine, instance)}/events",
            _page("transitions", Transition.from_json),
            _cursor(cursor),
        )
    )


def get_admin_instance(machine: str, instance: str) -> Flow[AdminState]:
    return single(Call("GET", f"{_instance(machine, instance)}/admin", AdminState.from_json))


def set_status(machine: str, instance: str, status: InstanceStatus) -> Flow[None]:
    return single(
        Call("PUT", f"{_instance(machine, instance)}/status", nothing, json={"status": status})
    )


def set_desired_version(
    machine: str, instance: str, version_id: str, upgrade_now: bool
) -> Flow[None]:
    body: dict[str, Any] = {"targetMachineVersionId": version_id}
    if upgrade_now:
        body["upgradeNow"] = True  # backstate's extension
    return single(Call("PUT", f"{_instance(machine, instance)}/v", nothing, json=body))


def dry_run_upgrade(machine: str, instance: str, version_id: str) -> Flow[UpgradeReport]:
    """backstate's extension: replay the instance's history against a version."""
    return single(
        Call(
            "POST",
            f"{_instance(machine, instance)}/v/dry-run",
            UpgradeReport.from_json,
            json={"targetMachineVersionId": version_id},
        )
    )


def list_timers(machine: str, instance: str) -> Flow[list[Timer]]:
    return single(
        Call(
            "GET",
            f"{_instance(machine, instance)}/timers",
            lambda body: [Timer.from_json(t) for t in body["timers"]],
        )
    )


def delete_instance(machine: str, instance: str, confirmed: object) -> Flow[None]:
    confirm_deletion(confirmed)
    body = {
        "dangerDataWillBeDeletedForever": True,
        "hmacSha256OfMachineInstanceNameWithMachineNameKey": confirmation_hmac(machine, instance),
    }
    return single(Call("DELETE", _instance(machine, instance), nothing, json=body))


# -- dead letters (backstate's extension) ----------------------------------------------------


def list_dead_letters() -> Flow[list[DeadLetter]]:
    return single(
        Call(
            "GET",
            "/dead-letters",
            lambda body: [DeadLetter.from_json(d) for d in body.get("deadLetters", [])],
        )
    )


def redeliver_dead_letter(dead_letter_id: int) -> Flow[None]:
    return single(Call("POST", f"/dead-letters/{int(dead_letter_id)}/redeliver", nothing))


def list_secrets() -> Flow[list[str]]:
    return single(
        Call("GET", "/secrets", lambda body: [s["name"] for s in body.get("secrets", [])])
    )


def set_secret(name: str, value: str) -> Flow[None]:
    return single(Call("PUT", f"/secrets/{_p(name)}", nothing, json={"value": value}))


def delete_secret(name: str) -> Flow[None]:
    return single(Call("DELETE", f"/secrets/{_p(name)}", nothing))


# -- logs -----------------------------------------------------------------------------------


def retrieve_logs(
    start: datetime,
    to: datetime | None,
    machine: str | None,
    instance: str | None,
    version_id: str | None,
) -> Flow[Logs]:
    params = {"from": iso(start)}
    for name, given in (("machine", machine), ("instance", instance), ("version", version_id)):
        if given is not None:
            params[name] = given
    if to is not None:
        params["to"] = iso(to)
    return single(Call("GET", "/logs", Logs.from_json, params))


class LogCursor:
    """Where a log watch has got to: each batch starts at the last one's
    ``max_timestamp`` (the server never splits a millisecond between batches, so
    nothing comes twice and nothing is skipped)."""

    def __init__(
        self,
        start: datetime,
        *,
        to: datetime | None,
        machine: str | None,
        instance: str | None,
        version_id: str | None,
    ) -> None:
        self.since = start
        self.to = to
        self.filters = (machine, instance, version_id)
        self.caught_up = False

    def fetch(self) -> Flow[Logs]:
        return retrieve_logs(self.since, self.to, *self.filters)

    def accept(self, logs: Logs) -> list[LogEntry]:
        """The batch's entries; moves the cursor on."""
        self.since = max(self.since, logs.max_timestamp)
        self.caught_up = not logs.entries
        return logs.entries

    def finished(self, now: datetime) -> bool:
        """With a ``to``: once the cursor passed it, or caught up after it."""
        return self.to is not None and (
            self.since >= self.to or (self.caught_up and now >= self.to)
        )


# -- orgs and keys --------------------------------------------------------------------------


def list_orgs(cursor: str | None) -> Flow[Page[OrgInfo]]:
    return single(Call("GET", "/orgs", _page("orgs", OrgInfo.from_json), _cursor(cursor)))


def create_org(name: str, allow_anonymous_access: bool) -> Flow[CreatedOrg]:
    body = {"name": name, "allowAnonymousAccess": allow_anonymous_access}
    return single(Call("POST", "/orgs", CreatedOrg.from_json, json=body))


def list_keys(cursor: str | None) -> Flow[Page[KeyInfo]]:
    return single(Call("GET", "/keys", _page("keys", KeyInfo.from_json), _cursor(cursor)))


def create_key(
    name: str, scopes: Sequence[str] | None, use: Literal["production", "ci"] | None
) -> Flow[CreatedKey]:
    if scopes is not None and use is not None:
        raise ValueError("give scopes or use, not both")
    body: dict[str, Any] = {"name": name}
    if scopes is not None:
        body["scopes"] = list(scopes)
    if use is not None:
        body["use"] = use
    return single(
        Call("POST", "/keys", lambda answer: CreatedKey(answer["id"], answer["key"]), json=body)
    )


def delete_key(key_id: str) -> Flow[None]:
    return single(Call("DELETE", f"/keys/{_p(key_id)}", nothing))


# -- identity providers, token providers, token exchange ------------------------------------


def list_identity_providers(cursor: str | None) -> Flow[Page[IdentityProviderInfo]]:
    return single(
        Call("GET", "/idps", _page("idps", IdentityProviderInfo.from_json), _cursor(cursor))
    )


def upsert_identity_provider(
    algs: Sequence[str],
    mapping: Mapping[str, Any],
    aud: str | None,
    iss: str | None,
    key: bytes | None,
    jwks_url: str | None,
) -> Flow[None]:
    if aud is None and iss is None:
        raise ValueError("give aud, iss or both")
    body: dict[str, Any] = {"algs": list(algs), "mapping": dict(mapping)}
    if aud is not None:
        body["aud"] = aud
    if iss is not None:
        body["iss"] = iss
    if key is not None:
        body["key"] = base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")
    if jwks_url is not None:
        body["jwksUrl"] = jwks_url
    return single(Call("POST", "/idps", nothing, json=body))


def delete_identity_provider(aud: str | None, iss: str | None) -> Flow[None]:
    if aud is None and iss is None:
        raise ValueError("give aud, iss or both")
    body = {name: value for name, value in (("aud", aud), ("iss", iss)) if value is not None}
    return single(Call("DELETE", "/idps", nothing, json=body))


def list_token_providers(cursor: str | None) -> Flow[Page[TokenProviderInfo]]:
    return single(
        Call(
            "GET",
            "/token-providers",
            _page("tokenProviders", TokenProviderInfo.from_json),
            _cursor(cursor),
        )
    )


def upsert_token_provider(service: str, key_id: str, mapping: Mapping[str, Any]) -> Flow[None]:
    body = {"service": service, "keyId": key_id, "mapping": dict(mapping)}
    return single(Call("POST", "/token-providers", nothing, json=body))


def delete_token_provider(service: str) -> Flow[None]:
    return single(Call("DELETE", f"/token-providers/{_p(service)}", nothing))


def exchange_token(org_id: str, service: str, token: str) -> Flow[str]:
    """RFC 8693 token exchange: an identity provider's token for a backstate token."""
    form = {
        "grant_type": TOKEN_EXCHANGE_GRANT_TYPE,
        "audience": f"{TOKEN_AUDIENCE_PREFIX}/{org_id}/{service}",
        "requested_token_type": ACCESS_TOKEN_TYPE,
        "subject_token": token,
    }
    return single(
        Call(
            "POST",
            "/tokens",
            lambda body: str(body["access_token"]),
            form=form,
            authenticated=False,
        )
    )
