"""Code uploads for State Backed's three-step version flow: a provisional version gets
a signed id and an upload URL (served here, like a presigned POST), the client posts
the file there as multipart, and ``PUT .../v/{signedId}`` finalizes the version.

Pending uploads live in memory for ``TTL_S``: a restart in the middle of the flow only
means the client starts over.
"""

from __future__ import annotations

import gzip
import secrets
import time
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from ._http import ApiError

TTL_S = 15 * 60
MAX_UPLOAD_BYTES = 1_000_000  # gzipped, as State Backed's bundle limit
MAX_SOURCE_BYTES = 10_000_000


@dataclass
class Pending:
    org_id: str
    machine: str
    gzipped: bool
    expires: float
    source: str | None = None
    # What the provisional request said beyond the machine (a migration's two versions).
    extra: dict[str, str] = field(default_factory=dict)


class Uploads:
    def __init__(self) -> None:
        self._pending: dict[str, Pending] = {}

    def provision(
        self, org_id: str, machine: str, gzipped: bool, extra: dict[str, str] | None = None
    ) -> str:
        now = time.monotonic()
        self._pending = {k: p for k, p in self._pending.items() if p.expires > now}
        token = "upl_" + secrets.token_urlsafe(24)
        self._pending[token] = Pending(org_id, machine, gzipped, now + TTL_S, None, extra or {})
        return token

    def supply(self, token: str, source: str) -> None:
        """The source of a pending upload, given some other way than the upload URL."""
        if len(source.encode()) > MAX_SOURCE_BYTES:
            raise ApiError(
                413, "payload-too-large", f"sources are limited to {MAX_SOURCE_BYTES} bytes"
            )
        self._pending[token].source = source

    def take(self, org_id: str, machine: str, token: str) -> Pending:
        """The upload for a signed id, once, with its ``source``."""
        pending = self._pending.get(token)
        if (
            pending is None
            or pending.expires < time.monotonic()
            or (pending.org_id, pending.machine) != (org_id, machine)
        ):
            raise ApiError(
                404,
                "upload-not-found",
                "no pending version with that id (expired, or another machine)",
            )
        if pending.source is None:
            raise ApiError(
                400, "invalid-parameter", "the code was not uploaded yet", "signedMachineVersionId"
            )
        del self._pending[token]
        return pending

    async def receive(self, request: Request) -> Response:
        """``POST /uploads/{token}``: multipart with the provisional fields and ``file``."""
        token = request.path_params["token"]
        pending = self._pending.get(token)
        if pending is None or pending.expires < time.monotonic():
            raise ApiError(404, "upload-not-found", "no pending upload with that id")
        size = int(request.headers.get("content-length") or 0)
        if size > MAX_UPLOAD_BYTES * 2:
            raise ApiError(
                413, "payload-too-large", f"uploads are limited to {MAX_UPLOAD_BYTES} bytes"
            )
        form = await request.form(max_files=1, max_fields=20)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ApiError(400, "invalid-parameter", "the form needs a file field", "file")
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise ApiError(
                413, "payload-too-large", f"uploads are limited to {MAX_UPLOAD_BYTES} bytes"
            )
        encoding = str(form.get("content-encoding") or upload.headers.get("content-encoding") or "")
        if pending.gzipped or encoding == "gzip" or data[:2] == b"\x1f\x8b":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as exc:
                raise ApiError(
                    400, "invalid-parameter", f"the file is not valid gzip: {exc}", "file"
                ) from exc
        if len(data) > MAX_SOURCE_BYTES:
            raise ApiError(
                413, "payload-too-large", f"sources are limited to {MAX_SOURCE_BYTES} bytes"
            )
        try:
            pending.source = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApiError(
                400, "invalid-parameter", "the file must be UTF-8 Python source", "file"
            ) from exc
        await form.close()
        return Response(status_code=204)
