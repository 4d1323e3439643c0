"""What ``Client`` and ``AsyncClient`` share: options, headers, the /rt URL, the token
cache, and building a client from the credentials file."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Self
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from backstate.auth import ACT_HEADER

from ._auth import DEFAULT_API_HOST, Auth, KeyAuth, TokenCache, load_credentials
from ._calls import Call
from ._realtime import Backoff

ORG_HEADER = "x-statebacked-org-id"
# Event requests wait for the instance to settle, up to the server's 90 s step timeout.
DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
DEFAULT_PING_INTERVAL_S = 240.0  # the server wants one at least every 5 minutes
DEFAULT_RETRIES = 3


class BaseClient:
    def __init__(
        self,
        api_host: str = DEFAULT_API_HOST,
        *,
        auth: Auth | None = None,
        org_id: str | None = None,
        act_as: Mapping[str, Any] | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        reconnect_backoff: Backoff | None = None,
        ping_interval_s: float = DEFAULT_PING_INTERVAL_S,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        """``auth``: a token, a function returning one, ``KeyAuth``, ``ExchangeAuth`` or
        ``AnonymousAuth``. ``org_id`` is sent as ``x-statebacked-org-id``; ``act_as``
        (auth-context claims, for keys holding ``org.keys.write``) as ``x-statebacked-act``.
        ``retries``: how many more times a create or an event is sent, under the same
        ``Idempotency-Key``, when it got no answer, a 502/503/504 or 409
        ``idempotency-key-in-use`` (0: never, and no key unless one is given).
        """
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, not {retries}")
        self.retries = retries
        self.api_host = api_host.rstrip("/")
        self.auth = auth
        self.org_id = org_id
        self.act_as = dict(act_as) if act_as is not None else None
        self.timeout = timeout
        self.reconnect_backoff = reconnect_backoff or Backoff()
        self.ping_interval_s = ping_interval_s
        self._tokens = TokenCache()

    @classmethod
    def from_credentials(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        claims: Mapping[str, Any] | None = None,
        api_host: str | None = None,
        **options: Any,
    ) -> Self:
        """A client signing its own tokens with the key in the credentials file that
        ``backstate serve`` writes (``$BACKSTATE_HOME/credentials.json``, else
        ``~/.backstate/credentials.json``); ``claims`` are the tokens' ``act`` claims."""
        credentials = load_credentials(path)
        auth = KeyAuth(credentials.key_id, credentials.secret, dict(claims or {}))
        return cls(api_host or credentials.api_host, auth=auth, **options)

    @property
    def tokens_obtained(self) -> int:
        """How many tokens this client has fetched or signed so far."""
        return self._tokens.obtained

    def _request(self, call: Call[Any], token: str | None) -> dict[str, Any]:
        """The arguments of ``httpx``'s ``request`` for a call, sync or async."""
        file = call.file
        return {
            "method": call.method,
            "url": call.url(self.api_host),
            "params": call.params or None,
            "json": call.json,
            "data": call.form,
            "files": {"file": (file.filename, file.content, file.content_type)} if file else None,
            "headers": self._headers(call, token),
        }

    def _headers(self, call: Call[Any], token: str | None) -> dict[str, str]:
        headers = {"user-agent": "backstate-client", **call.headers}
        if not call.authenticated:
            return headers
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        if self.org_id is not None:
            headers[ORG_HEADER] = self.org_id
        if self.act_as is not None:
            headers[ACT_HEADER] = json.dumps(self.act_as, separators=(",", ":"))
        return headers

    def _realtime_url(self, token: str | None) -> str:
        parts = urlsplit(self.api_host)
        query = {"token": token} if token is not None else {}
        if self.org_id is not None:
            query[ORG_HEADER] = self.org_id
        return urlunsplit(
            (
                "ws" if parts.scheme == "http" else "wss",
                parts.netloc,
                parts.path.rstrip("/") + "/rt",
                urlencode(query),
                "",
            )
        )
