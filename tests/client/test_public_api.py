"""The public surface of backstate.client does not drift, and ``Client`` and
``AsyncClient`` offer the same methods with the same parameters."""

from __future__ import annotations

import inspect

import pytest

from backstate import auth, client
from backstate.client import _async, _sync

PUBLIC_API = [
    "DEFAULT_API_HOST",
    "AdminState",
    "AnonymousAuth",
    "ApiError",
    "AsyncClient",
    "AsyncSubscription",
    "Auth",
    "Backoff",
    "BadRequest",
    "Client",
    "Conflict",
    "CreatedKey",
    "CreatedOrg",
    "Credentials",
    "DeadLetter",
    "Event",
    "ExchangeAuth",
    "Forbidden",
    "IdentityProviderInfo",
    "IndexEntry",
    "IndexInfo",
    "IndexValue",
    "InstanceInfo",
    "KeyAuth",
    "KeyInfo",
    "LogEntry",
    "Logs",
    "MachineInfo",
    "MachineVersionInfo",
    "MigrationInfo",
    "MissingOrg",
    "MissingScope",
    "MissingUser",
    "NoMigrationPath",
    "NoTransition",
    "NotFound",
    "OrgHeaderRequired",
    "OrgInfo",
    "Page",
    "PayloadTooLarge",
    "Progress",
    "ProvisionalUpload",
    "RejectedByMachineAuthorizer",
    "ServerError",
    "State",
    "StateValue",
    "Subscription",
    "Timer",
    "TokenProviderInfo",
    "Transition",
    "Unauthorized",
    "Unreachable",
    "UpgradeReport",
    "apaginate",
    "default_credentials_path",
    "load_credentials",
    "paginate",
    "sign_token",
]

NAMESPACES = [
    "machines",
    "machine_versions",
    "migrations",
    "indexes",
    "instances",
    "logs",
    "orgs",
    "keys",
    "identity_providers",
    "token_providers",
    "tokens",
]


def test_public_api_does_not_drift() -> None:
    assert sorted(client.__all__) == sorted(PUBLIC_API)
    for name in PUBLIC_API:
        assert hasattr(client, name)
    assert client.sign_token is auth.sign_token  # @statebacked/token's, for servers


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if callable(member) and not name.startswith("_")
    }


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_sync_and_async_namespaces_match(namespace: str) -> None:
    sync_client = client.Client(auth="token")
    try:
        sync_ns = type(getattr(sync_client, namespace))
    finally:
        sync_client.close()
    async_ns = getattr(_async, sync_ns.__name__)
    assert sync_ns is getattr(_sync, sync_ns.__name__)
    sync_methods, async_methods = public_methods(sync_ns), public_methods(async_ns)
    assert sync_methods.keys() == async_methods.keys()
    for name, signature in sync_methods.items():
        asynchronous = async_methods[name]
        assert list(signature.parameters.values()) == list(asynchronous.parameters.values()), name
        if name != "subscribe":  # it returns at once; the states arrive by iteration
            assert inspect.iscoroutinefunction(vars(async_ns)[name]) or inspect.isasyncgenfunction(
                vars(async_ns)[name]
            ), name


def test_clients_offer_the_same_extras() -> None:
    shared = {"upload_code", "realtime_connections", "tokens_obtained", "from_credentials"}
    for cls in (client.Client, client.AsyncClient):
        assert shared <= set(dir(cls))
