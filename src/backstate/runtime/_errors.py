"""Errors of the durable runtime, each with a stable code and an HTTP-like status.

BackstateError
├── NotFound            404  machine-not-found, instance-not-found
├── Conflict            409  instance-exists, invalid-state (paused), idempotency-key-in-use
├── InvalidRequest      400  invalid-name, invalid-json, invalid-event, context-too-large
├── EventRejected       400  event-rejected: the machine's own code raised
├── Forbidden           403  rejected-by-machine-authorizer, authorizer-failed
├── IdempotencyKeyReused 422 idempotency-key-reused: the key came with another request
├── UserCodeFailed      422  user-code-crashed, invalid-user-code-output, user-code-memory
│   └── UserCodeTimeout 408  user-code-timeout: machine code ran past its CPU limit
└── Unavailable         503  store-unavailable, shutting-down
"""

from __future__ import annotations


class BackstateError(Exception):
    status = 500

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


class NotFound(BackstateError):
    status = 404


class Conflict(BackstateError):
    status = 409


class InvalidRequest(BackstateError):
    status = 400


class EventRejected(BackstateError):
    status = 400


class Forbidden(BackstateError):
    status = 403


class IdempotencyKeyReused(BackstateError):
    status = 422


class UserCodeFailed(BackstateError):
    """Machine code, run in a sandboxed worker, stopped its worker or answered
    something that is not what it may answer."""

    status = 422


class UserCodeTimeout(UserCodeFailed):
    status = 408


class Unavailable(BackstateError):
    status = 503
