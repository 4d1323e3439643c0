"""Errors of the durable runtime, each with a stable code and an HTTP-like status.

BackstateError
├── NotFound            404  machine-not-found, instance-not-found
├── Conflict            409  instance-exists, invalid-state (paused)
├── InvalidRequest      400  invalid-name, invalid-json, invalid-event, context-too-large
├── EventRejected       400  event-rejected: the machine's own code raised
├── Forbidden           403  rejected-by-machine-authorizer
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


class Unavailable(BackstateError):
    status = 503
