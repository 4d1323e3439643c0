"""A machine whose service fetches a URL (tests/sandbox/test_egress.py): the outcome,
or the error, lands in the public context."""

from typing import Any

import httpx

from backstate.chart import assign, setup


async def fetch(input: dict[str, Any]) -> str:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(input["url"])
        return f"{response.status_code} {response.text}"


def fetch_in_a_transition(context: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    try:
        result = httpx.get(event["url"], timeout=5).text
    except Exception as exc:
        result = f"blocked: {type(exc).__name__}"
    return {**context["public"], "transition": result}


machine = setup(actors={"fetch": fetch}).create_machine(
    {
        "initial": "idle",
        "context": {"public": {}},
        "states": {
            "idle": {
                "on": {
                    "fetch": "fetching",
                    "fetch_here": {"actions": assign({"public": fetch_in_a_transition})},
                }
            },
            "fetching": {
                "invoke": {
                    "src": "fetch",
                    "input": lambda c, e: {"url": e["url"]},
                    "onDone": {
                        "target": "idle",
                        "actions": assign(
                            {"public": lambda c, e: {**c["public"], "result": e["output"]}}
                        ),
                    },
                    "onError": {
                        "target": "idle",
                        "actions": assign(
                            {
                                "public": lambda c, e: {
                                    **c["public"],
                                    "result": "error: " + e["error"]["name"],
                                }
                            }
                        ),
                    },
                }
            },
        },
    }
)


def allow_read(**kwargs: Any) -> bool:
    return True


def allow_write(**kwargs: Any) -> bool:
    return True
