"""What a newcomer sees (issue 15), through the real command against a real, sandboxed
`backstate serve`: a misspelt event, a false guard and an event to a finished instance
each say why nothing happened (exit status 3); a quoted event type is refused; a
raising assign or action is named, with its traceback in the instance's logs."""

from __future__ import annotations

import time

import httpx

from tests.server.test_e2e import Server

from .conftest import FILES, Cli


def _deploy(cli: Cli, name: str) -> None:
    cli("machines", "create", "-m", name, "--file", str(FILES / "purchase_order.py"))
    cli("instances", "create", "-m", name, "-i", "one")


def _send(cli: Cli, name: str, event: str) -> tuple[int, str]:
    sent = cli("instances", "send-event", "-m", name, "-i", "one", "-e", event, ok=False)
    return sent.status, sent.stderr.strip()


def _logs(cli: Cli, name: str, needle: str) -> str:
    for _ in range(100):
        text = cli("logs", "get", "-m", name).stdout
        if needle in text:
            return text
        time.sleep(0.1)
    raise AssertionError(f"no log line with {needle!r}")


def test_events_that_change_nothing_say_why(cli: Cli, name: str) -> None:
    _deploy(cli, name)
    assert _send(cli, name, "submitt") == (
        3,
        "warning: no transition for 'submitt' in state draft, which accepts submit "
        "(did you mean 'submit'?)",
    )
    assert _send(cli, name, '"submit"') == (
        1,
        "error: event type must not be wrapped in quotes, got '\"submit\"' (to send "
        "the event 'submit', pass the type without quotes: -e submit) (invalid-event)",
    )
    assert _send(cli, name, "submit") == (0, "")
    assert _send(cli, name, "approve") == (
        3,
        "warning: no transition for 'approve' in state review: guard 'isManager' returned false",
    )
    assert _send(cli, name, '{"type": "approve", "role": "manager"}') == (0, "")
    assert _send(cli, name, "close") == (0, "")
    assert _send(cli, name, "close") == (
        3,
        "warning: no transition for 'close' in state closed: the instance is done",
    )
    as_json = cli("--json", "instances", "send-event", "-m", name, "-i", "one", "-e", "x", ok=False)
    assert as_json.status == 3
    assert as_json.json_any()["noTransition"]["reason"] == "done"


def test_the_api_answers_with_the_extension_field(server: Server, cli: Cli, name: str) -> None:
    _deploy(cli, name)
    answer = httpx.post(
        f"{server.url}/machines/{name}/i/one/events",
        json={"event": "submitt"},
        headers=server.headers({"sub": "admin"}),
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["state"] == "draft"
    assert body["noTransition"] == {
        "reason": "no-transition",
        "eventType": "submitt",
        "states": ["draft"],
        "accepts": ["submit"],
        "message": "no transition for 'submitt' in state draft, which accepts submit "
        "(did you mean 'submit'?)",
    }


def test_raising_code_is_named_and_its_traceback_logged(cli: Cli, name: str) -> None:
    _deploy(cli, name)
    cli("instances", "send-event", "-m", name, "-i", "one", "-e", "submit")
    status, error = _send(cli, name, "explode")
    assert status == 1
    assert error.startswith(
        f"error: {name}/one rejected 'explode': assign 'total' raised ZeroDivisionError: "
        "division by zero ("
    )
    assert error.endswith(":22 in total) (event-rejected)")
    logged = _logs(cli, name, "Traceback")
    assert "ZeroDivisionError: division by zero" in logged and "chart/_actions.py" not in logged
    # As the org names its machine: the server's namespace for the org is not shown.
    assert f"  {name}/one rejected 'explode'" in logged and ".{name}/one" not in logged, logged

    assert _send(cli, name, "reject") == (0, "")  # the action runs after the commit
    assert "action 'notifyBuyer' raised ConnectionError: mail server refused the connection" in (
        _logs(cli, name, "notifyBuyer")
    )
