"""backstate.client: the State Backed API from Python, blocking (``Client``) or on
asyncio (``AsyncClient``), including instance subscriptions over /rt.

    from backstate.client import Client

    with Client.from_credentials(claims={"sid": "session-123"}) as client:
        state = client.instances.get_or_create("toggler", "session-123")
        state = client.instances.send_event("toggler", "session-123", "toggle")
        with client.instances.subscribe("toggler", "session-123") as updates:
            for state in updates:
                print(state.value, state.public_context)

See docs/client.md: authentication, errors, and the token refresh and reconnect rules.
"""

from backstate.auth import sign_token

from ._async import AsyncClient, AsyncSubscription
from ._auth import (
    DEFAULT_API_HOST,
    AnonymousAuth,
    Auth,
    Credentials,
    ExchangeAuth,
    KeyAuth,
    default_credentials_path,
    load_credentials,
)
from ._errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    MissingOrg,
    MissingScope,
    MissingUser,
    NoMigrationPath,
    NotFound,
    OrgHeaderRequired,
    PayloadTooLarge,
    RejectedByMachineAuthorizer,
    ServerError,
    Unauthorized,
    Unreachable,
)
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
    NoTransition,
    OrgInfo,
    Page,
    Progress,
    ProvisionalUpload,
    State,
    StateValue,
    Timer,
    TokenProviderInfo,
    Transition,
    UpgradeReport,
)
from ._paging import apaginate, paginate
from ._realtime import Backoff
from ._sync import Client, Subscription

__all__ = [
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
