"""Research agent: an LLM workflow as one durable instance per run (docs/research_agent.md).

plan -> research the plan's questions in parallel -> summarize (streamed) -> wait for a
human's approval -> publish. Each step is an invoked service calling an
OpenAI-compatible model with the ``openai`` client; the model's address and key are the
org's secrets ``OPENAI_BASE_URL`` (optional: OpenAI's own by default) and
``OPENAI_API_KEY`` (``backstate secrets set``; ``scripts/serve`` sets both, for the fake
model in ``examples/fake_openai`` unless you give it a real one).

What it shows:

- **retries**: every model call has ``retry`` (three attempts, 1 s then 2 s apart): a
  500, a 429 or a dropped connection is tried again on a durable timer, and ``onError``
  comes once, after the last attempt. The client's own retries are off
  (``max_retries=0``): they would be invisible and lost in a crash;
- **the step timeout**: no invoke sets ``timeout_ms``, so each attempt may run for the
  server's step timeout (90 s, ``--step-timeout``); an attempt past it is stopped with a
  ``Timeout`` error and retried like any failure. A request that creates a run returns
  when the run settles or after 90 s, whichever comes first: the run goes on either way;
- **streamed tokens**: the summary is streamed from the model and each piece is
  published with ``progress({"token": ...})``: /rt subscribers get it as it is written
  (``instance-progress``), while only the finished summary is committed;
- **cost per run**: each call's ``usage`` is added to ``public.tokens`` and priced into
  ``public.costUsd`` (``prices``: US dollars per million input and output tokens,
  gpt-4o-mini's list price unless the run's input says otherwise);
- **an index on the run's status**: ``public.status`` (``planning``, ``researching``,
  ``summarizing``, ``awaiting-approval``, ``publishing``, ``published``, ``rejected``,
  ``failed``) is the ``status`` index, so ``GET /machines/research-agent/indexes/status/query?op=eq&value=awaiting-approval``
  lists the runs waiting for a reviewer.

Create a run with ``--input '{"topic": "...", "reviewer": "ada"}'`` (``reviewer``: the
``sub`` who may approve; anyone signed in, without it); approve it with the event
``approve``, send it back with ``{"type": "revise", "feedback": "..."}`` or ``reject``.
"""

from __future__ import annotations

import json
from typing import Any

from openai import AsyncOpenAI

from backstate.chart import assign, setup
from backstate.runtime import current_effect, progress, secret

MACHINE_NAME = "research-agent"
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_PRICES = {"input": 0.15, "output": 0.60}  # US$ per million tokens: gpt-4o-mini's
MAX_QUESTIONS = 3  # the research regions; a plan's further questions are dropped
MODEL_RETRY = {"attempts": 3, "initial_ms": 1000, "factor": 2, "max_ms": 10_000, "jitter": 0.1}

index_selectors = {"status": "$.public.status"}

# -- the model --------------------------------------------------------------------------


def _model() -> AsyncOpenAI:
    """A client for the org's model. Secrets are read here, in the service, never in the
    transition (where ``secret`` raises): they never reach the context or the history."""
    try:
        base_url: str | None = secret("OPENAI_BASE_URL")
    except KeyError:
        base_url = None  # the client's default, https://api.openai.com/v1
    return AsyncOpenAI(api_key=secret("OPENAI_API_KEY"), base_url=base_url, max_retries=0)


def _usage(usage: Any) -> dict[str, int]:
    if usage is None:
        return {"input": 0, "output": 0}
    return {"input": usage.prompt_tokens, "output": usage.completion_tokens}


async def plan(input: dict[str, Any]) -> dict[str, Any]:
    """Ask the model for the questions worth researching about the topic."""
    async with _model() as model:
        reply = await model.chat.completions.create(
            model=input["model"],
            response_format={"type": "json_object"},
            messages=[
                {
                    "role": "system",
                    "content": "You plan research. Answer with a JSON object"
                    f' {{"questions": [...]}} of at most {MAX_QUESTIONS} short questions.',
                },
                {"role": "user", "content": input["topic"]},
            ],
        )
    text = reply.choices[0].message.content or "{}"
    questions = json.loads(text).get("questions", [])
    if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
        raise ValueError(f"the plan is not a list of questions: {text[:200]}")
    return {"questions": questions[:MAX_QUESTIONS], "usage": _usage(reply.usage)}


async def research(input: dict[str, Any]) -> dict[str, Any]:
    """One tool call: answer one question of the plan (the regions run these at once)."""
    async with _model() as model:
        reply = await model.chat.completions.create(
            model=input["model"],
            messages=[
                {"role": "system", "content": "Answer the research question in three sentences."},
                {"role": "user", "content": input["question"]},
            ],
        )
    finding = reply.choices[0].message.content or ""
    return {"finding": finding, "usage": _usage(reply.usage)}


async def summarize(input: dict[str, Any]) -> dict[str, Any]:
    """Write the report from the findings, streaming it: each piece is progress."""
    notes = "\n".join(
        f"Q: {q}\nA: {a}" for q, a in zip(input["questions"], input["findings"], strict=True)
    )
    feedback = f"\nThe reviewer asked: {input['feedback']}" if input.get("feedback") else ""
    pieces: list[str] = []
    usage = None
    async with _model() as model:
        stream = await model.chat.completions.create(
            model=input["model"],
            stream=True,
            stream_options={"include_usage": True},
            messages=[
                {"role": "system", "content": "Summarize the findings as a short report."},
                {"role": "user", "content": f"Topic: {input['topic']}\n{notes}{feedback}"},
            ],
        )
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content:
                    pieces.append(choice.delta.content)
                    progress({"token": choice.delta.content})
    return {"summary": "".join(pieces), "usage": _usage(usage)}


async def publish(input: dict[str, Any]) -> dict[str, Any]:
    """Publish the approved report. Here it goes to the instance's logs; a real one
    would post it, with the effect's id as the idempotency key of that call (the same
    for every attempt, so a retried publication is published once)."""
    publication = str(current_effect())
    print(f"published {publication}: {input['topic']}\n{input['summary']}")
    return {"publication": publication}


# -- the machine ------------------------------------------------------------------------


def initial_context(input: dict[str, Any] | None) -> dict[str, Any]:
    input = input or {}
    return {
        "model": input.get("model", DEFAULT_MODEL),
        "prices": input.get("prices", DEFAULT_PRICES),
        "reviewer": input.get("reviewer"),
        "feedback": None,
        "public": {
            "topic": str(input.get("topic", "")),
            "status": "planning",
            "questions": [],
            "findings": [None] * MAX_QUESTIONS,
            "summary": None,
            "publication": None,
            "error": None,
            "tokens": {"input": 0, "output": 0},
            "costUsd": 0.0,
        },
    }


def _public(context: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**context["public"], **changes}


def _status(status: str) -> dict[str, Any]:
    return assign({"public": lambda c, e: _public(c, status=status)})


def _spent(context: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """The public context with the done event's usage counted and priced."""
    used = event["output"]["usage"]
    tokens = context["public"]["tokens"]
    tokens = {"input": tokens["input"] + used["input"], "output": tokens["output"] + used["output"]}
    prices = context["prices"]
    cost = (used["input"] * prices["input"] + used["output"] * prices["output"]) / 1_000_000
    return _public(context, tokens=tokens, costUsd=round(context["public"]["costUsd"] + cost, 9))


def _failed(context: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    error = event.get("error") or {}
    return _public(context, error=f"{error.get('name')}: {error.get('message')}")


def _model_input(**fields: Any) -> Any:
    def input(context: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        public = context["public"]
        return {"model": context["model"], **{k: f(context, public) for k, f in fields.items()}}

    return input


def _found(index: int) -> Any:
    def found(context: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        findings = list(context["public"]["findings"])
        findings[index] = event["output"]["finding"]
        return {**_spent(context, event), "findings": findings}

    return found


def _lost(index: int) -> Any:
    """A question whose research failed every attempt: the report says so, the run goes on."""

    def lost(context: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        findings = list(context["public"]["findings"])
        findings[index] = f"(no finding: {(event.get('error') or {}).get('message')})"
        return _public(context, findings=findings)

    return lost


def _research_region(index: int) -> dict[str, Any]:
    return {
        "initial": "starting",
        "states": {
            "starting": {
                "always": [
                    {
                        "guard": lambda c, e: index < len(c["public"]["questions"]),
                        "target": "working",
                    },
                    {"target": "done"},
                ]
            },
            "working": {
                "invoke": {
                    "id": f"research{index}",
                    "src": "research",
                    "retry": MODEL_RETRY,
                    "input": _model_input(question=lambda c, p: p["questions"][index]),
                    "onDone": {"target": "done", "actions": assign({"public": _found(index)})},
                    "onError": {"target": "done", "actions": assign({"public": _lost(index)})},
                }
            },
            "done": {"type": "final"},
        },
    }


def _summary_input(context: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    public = context["public"]
    questions = public["questions"]
    return {
        "model": context["model"],
        "topic": public["topic"],
        "questions": questions,
        "findings": public["findings"][: len(questions)],
        "feedback": context["feedback"],
    }


machine = setup(
    actors={"plan": plan, "research": research, "summarize": summarize, "publish": publish},
).create_machine(
    {
        "id": "research-agent",
        "initial": "planning",
        "context": initial_context,
        "states": {
            "planning": {
                "entry": _status("planning"),
                "invoke": {
                    "id": "planner",
                    "src": "plan",
                    "retry": MODEL_RETRY,
                    "input": _model_input(topic=lambda c, p: p["topic"]),
                    "onDone": {
                        "target": "researching",
                        "actions": assign(
                            {
                                "public": lambda c, e: {
                                    **_spent(c, e),
                                    "questions": e["output"]["questions"],
                                }
                            }
                        ),
                    },
                    "onError": {"target": "failed", "actions": assign({"public": _failed})},
                },
            },
            "researching": {
                "entry": _status("researching"),
                "type": "parallel",
                "states": {f"question{i}": _research_region(i) for i in range(MAX_QUESTIONS)},
                "onDone": "summarizing",
            },
            "summarizing": {
                "entry": _status("summarizing"),
                "invoke": {
                    "id": "writer",
                    "src": "summarize",
                    "retry": MODEL_RETRY,
                    "input": _summary_input,
                    "onDone": {
                        "target": "awaitingApproval",
                        "actions": assign(
                            {
                                "public": lambda c, e: {
                                    **_spent(c, e),
                                    "summary": e["output"]["summary"],
                                }
                            }
                        ),
                    },
                    "onError": {"target": "failed", "actions": assign({"public": _failed})},
                },
            },
            "awaitingApproval": {
                "entry": _status("awaiting-approval"),
                "on": {
                    "approve": "publishing",
                    "revise": {
                        "target": "summarizing",
                        "actions": assign({"feedback": lambda c, e: str(e.get("feedback", ""))}),
                    },
                    "reject": "rejected",
                },
            },
            "publishing": {
                "entry": _status("publishing"),
                "invoke": {
                    "id": "publisher",
                    "src": "publish",
                    "retry": MODEL_RETRY,
                    "input": lambda c, e: {
                        "topic": c["public"]["topic"],
                        "summary": c["public"]["summary"],
                    },
                    "onDone": {
                        "target": "published",
                        "actions": assign(
                            {
                                "public": lambda c, e: _public(
                                    c, publication=e["output"]["publication"]
                                )
                            }
                        ),
                    },
                    "onError": {"target": "failed", "actions": assign({"public": _failed})},
                },
            },
            "published": {"type": "final", "entry": _status("published")},
            "rejected": {"type": "final", "entry": _status("rejected")},
            "failed": {"type": "final", "entry": _status("failed")},
        },
    }
)

# -- authorization ----------------------------------------------------------------------

REVIEW_EVENTS = ("approve", "revise", "reject")


def allow_read(*, auth_context: dict[str, Any], **_: Any) -> bool:
    """Anyone signed in (a ``sub``) may follow a run."""
    return bool(auth_context.get("sub"))


def allow_write(
    *,
    auth_context: dict[str, Any],
    context: dict[str, Any] | None,
    event: Any = None,
    write_type: str,
    **_: Any,
) -> bool:
    """Anyone signed in starts a run; only its reviewer (when it names one) reviews it."""
    who = auth_context.get("sub")
    if not who:
        return False
    kind = event.get("type") if isinstance(event, dict) else event
    if write_type == "event" and kind in REVIEW_EVENTS:
        reviewer = (context or {}).get("reviewer")
        return reviewer is None or reviewer == who
    return True
