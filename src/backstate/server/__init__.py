"""backstate.server: State Backed's HTTP API (REST and the /rt WebSocket) over the
durable runtime, as a Starlette app served by uvicorn."""

from ._app import create_app
from ._backend import Backend, Credentials
from ._metrics import serve_metrics
from ._protocol import uvicorn_options

__all__ = ["Backend", "Credentials", "create_app", "serve_metrics", "uvicorn_options"]
