"""A fake OpenAI-compatible model server, for the research agent's tests and for
``scripts/serve`` when no real model is configured. Never a real provider: answers are
deterministic functions of the request, so a test can predict every token.

``POST /v1/chat/completions`` answers like OpenAI's Chat Completions API, streamed
(``"stream": true``: server-sent events, one chunk per word, then a chunk with ``usage``
when ``stream_options.include_usage`` asks for it, then ``[DONE]``) or not, with
``usage`` counted in words (a word is a token here):

- asked for JSON (``response_format: {"type": "json_object"}``, as the agent's planner
  asks), the answer is ``{"questions": [three questions about the last user message]}``;
- otherwise it is one sentence quoting the start of the last user message.

Its knobs, for tests and for trying failures by hand (``curl``):

- ``POST /admin/faults`` ``{"status": 500, "times": 2}``: the next two calls fail with
  that status (429 comes with ``retry-after: 1``) and OpenAI's error body;
  ``{"delay_s": 5, "times": 1}``: the next call waits 5 s before it answers;
- ``GET /admin/calls``: every call so far (``model``, ``stream``, ``messages``,
  ``status``), in order; ``POST /admin/reset`` forgets calls and faults;
- ``token_delay_s`` (``--token-delay``, or ``{"token_delay_s": 0.5}`` posted to
  ``/admin/faults``): the pause between streamed words.

With an ``api_key``, a call without ``Authorization: Bearer <api_key>`` gets 401.

Run it with ``python -m examples.fake_openai`` (it prints its base URL first), or in a
test with ``FakeModel().start()``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["FakeModel", "answer_for", "usage_for"]


@dataclass
class Fault:
    status: int | None = None  # fail with this HTTP status
    delay_s: float = 0.0  # answer only after this long
    times: int = 1


def _last_user_message(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def answer_for(messages: list[dict[str, Any]], json_mode: bool) -> str:
    """What the fake model answers to ``messages``."""
    asked = " ".join(_last_user_message(messages).split())
    if json_mode:
        topic = asked.rstrip("?.!") or "nothing"
        questions = [
            f"What is {topic}?",
            f"Why does {topic} matter?",
            f"What comes next for {topic}?",
        ]
        return json.dumps({"questions": questions})
    quoted = " ".join(asked.split()[:12])
    return f'The fake model read "{quoted}" and answers it, deterministically.'


def usage_for(messages: list[dict[str, Any]], answer: str) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in messages)
    completion = len(answer.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


@dataclass
class FakeModel:
    """The server's state, its Starlette app, and (``start``) a thread serving it."""

    host: str = "127.0.0.1"
    port: int = 0  # any free port
    api_key: str | None = None
    token_delay_s: float = 0.0
    calls: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._completions, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/admin/faults", self._add_fault, methods=["POST"]),
                Route("/admin/calls", self._calls, methods=["GET"]),
                Route("/admin/reset", self._reset, methods=["POST"]),
            ]
        )

    @property
    def url(self) -> str:
        """The base URL an OpenAI client is given."""
        return f"http://{self.host}:{self.port}/v1"

    # -- knobs (also over HTTP) -------------------------------------------------------------

    def fail(self, status: int = 500, times: int = 1) -> None:
        with self._lock:
            self.faults.append(Fault(status=status, times=times))

    def delay(self, seconds: float, times: int = 1) -> None:
        with self._lock:
            self.faults.append(Fault(delay_s=seconds, times=times))

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.faults.clear()

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if not self.faults:
                return None
            fault = self.faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self.faults.pop(0)
            return fault

    # -- routes ---------------------------------------------------------------------------

    async def _completions(self, request: Request) -> Response:
        if self.api_key is not None and request.headers.get("authorization") != (
            f"Bearer {self.api_key}"
        ):
            return _error(401, "invalid_api_key", "Incorrect API key provided.")
        try:
            body = await request.json()
            messages = list(body["messages"])
        except (ValueError, KeyError, TypeError):
            return _error(400, "invalid_request_error", "messages is required")
        model = str(body.get("model", "fake"))
        stream = bool(body.get("stream"))
        call = {"model": model, "stream": stream, "messages": messages, "status": 200}
        with self._lock:
            self.calls.append(call)
        fault = self._next_fault()
        if fault is not None and fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault is not None and fault.status is not None:
            call["status"] = fault.status
            return _error(fault.status, "injected_fault", f"injected failure ({fault.status})")
        json_mode = (body.get("response_format") or {}).get("type") == "json_object"
        answer = answer_for(messages, json_mode)
        usage = usage_for(messages, answer)
        created = int(time.time())
        ident = f"chatcmpl-fake-{len(self.calls)}"
        if not stream:
            return JSONResponse(
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = self._chunks(ident, created, model, answer, usage if include_usage else None)
        return StreamingResponse(chunks, media_type="text/event-stream")

    async def _chunks(
        self, ident: str, created: int, model: str, answer: str, usage: dict[str, int] | None
    ) -> AsyncIterator[str]:
        def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
            data = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
                **extra,
            }
            return f"data: {json.dumps(data)}\n\n"

        words = answer.split(" ")
        yield chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}])
        for n, word in enumerate(words):
            if self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
            text = word if n == 0 else " " + word
            yield chunk([{"index": 0, "delta": {"content": text}, "finish_reason": None}])
        yield chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if usage is not None:
            yield chunk([], usage=usage)
        yield "data: [DONE]\n\n"

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def _add_fault(self, request: Request) -> Response:
        body = await request.json()
        times = int(body.get("times", 1))
        if body.get("status") is not None:
            self.fail(int(body["status"]), times)
        if body.get("delay_s"):
            self.delay(float(body["delay_s"]), times)
        if body.get("token_delay_s") is not None:
            self.token_delay_s = float(body["token_delay_s"])  # from now on, every stream
        return Response(status_code=204)

    async def _calls(self, request: Request) -> Response:
        with self._lock:
            return JSONResponse({"calls": list(self.calls)})

    async def _reset(self, request: Request) -> Response:
        self.reset()
        return Response(status_code=204)

    # -- serving --------------------------------------------------------------------------

    def _config(self) -> tuple[uvicorn.Server, socket.socket]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off")
        return uvicorn.Server(config), sock

    def serve(self, ready: threading.Event | None = None) -> None:
        """Serve in this thread until ``stop``; ``url`` is known once ``ready`` is set."""
        server, sock = self._config()
        self._server = server
        if ready is not None:
            ready.set()
        server.run(sockets=[sock])

    def start(self) -> FakeModel:
        """Serve on a background thread; returns once it accepts connections."""
        ready = threading.Event()
        self._thread = threading.Thread(target=self.serve, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait()
        assert self._server is not None
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeModel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _error(status: int, code: str, message: str) -> Response:
    headers = {"retry-after": "1"} if status == 429 else None
    body = {"error": {"message": message, "type": code, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)
