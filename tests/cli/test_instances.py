"""`backstate instances`: create, send-event, get, list, list-transitions, query with
cursors, set-status, delete (one and --all), and watch."""

from __future__ import annotations

import json

from .conftest import FILES, Cli, deploy_greeter


def test_create_send_get_and_transitions(cli: Cli, name: str) -> None:
    deploy_greeter(cli, name)
    created = cli("instances", "create", "-m", name, "-i", "one", "--context", '{"owner": "ann"}')
    assert created.lines == ["state           listening", 'public context  {"said": 0}']

    sent = cli(
        "instances", "send-event", "-m", name, "-i", "one", "-e", '{"type": "say", "text": "hi"}'
    )
    assert sent.lines == ["state           listening", 'public context  {"said": 1}']
    state = cli("--json", "instances", "send-event", "-m", name, "-i", "one", "-e", "finish").json()
    assert state == {**state, "state": "finished", "publicContext": {"said": 1}, "done": True}
    assert isinstance(state["ts"], int)

    admin = cli("instances", "get", "-m", name, "-i", "one", "--json").json()
    assert admin["context"] == {"public": {"said": 1}, "owner": "ann"}
    assert (admin["status"], admin["machineVersion"]["clientInfo"]) == ("running", "1.0.0")
    fields = dict(
        line.split(None, 1) for line in cli("instances", "get", "-m", name, "-i", "one").lines
    )
    assert fields["state"] == "finished" and fields["done"] == "yes"

    listed = cli("instances", "list", "-m", name).lines
    assert listed[0].split() == ["instance", "created", "(UTC)", "version", "reference", "status"]
    assert listed[1].split()[0] == "one" and listed[1].split()[-2:] == ["1.0.0", "running"]

    transitions = cli("--json", "instances", "list-transitions", "-m", name, "-i", "one").json()
    events = [t["event"] for t in transitions["transitions"]]
    assert events[1:] == [{"type": "say", "text": "hi"}, {"type": "finish"}]
    table = cli("instances", "list-transitions", "-m", name, "-i", "one").lines
    assert table[0].split() == ["time", "(UTC)", "event", "state"] and table[-1].endswith(
        "finished"
    )


def test_auth_context_reaches_the_authorizer(cli: Cli) -> None:
    # The server deploys examples/toggler.py: only the session named like the instance.
    refused = cli("instances", "create", "-m", "toggler", "-i", "s-cli", ok=False)
    assert refused.status == 1 and refused.error.endswith("(rejected-by-machine-authorizer)")
    assert "carried no auth context" in refused.error and "--auth-context" in refused.error
    # Refused for another end user: no hint about a forgotten flag.
    other = ["--auth-context", '{"sid": "someone-else"}']
    refused = cli("instances", "create", "-m", "toggler", "-i", "s-cli", *other, ok=False)
    assert refused.error.endswith("(rejected-by-machine-authorizer)")
    assert "carried no auth context" not in refused.error
    me = ["--auth-context", '{"sid": "s-cli"}']
    cli("instances", "create", "-m", "toggler", "-i", "s-cli", *me)
    sent = cli("instances", "send-event", "-m", "toggler", "-i", "s-cli", "-e", "toggle", *me)
    assert sent.lines == ["state           off", 'public context  {"toggleCount": 1}']

    # A token of your own instead of the key: `tokens generate` signs one.
    token = cli("tokens", "generate", "--claims", '{"sid": "s-cli"}', "--expires", "10m").stdout
    again = cli(
        "instances",
        "send-event",
        "-m",
        "toggler",
        "-i",
        "s-cli",
        "-e",
        "toggle",
        "--token",
        token.strip(),
    )
    assert again.lines[0] == "state           on"


def test_query_follows_cursors(cli: Cli, name: str) -> None:
    deploy_greeter(cli, name, "--index", "owner", "--index-selectors", '{"said": "$.public.said"}')
    cli(
        "machine-versions",
        "create",
        "-m",
        name,
        "-f",
        str(FILES / "greeter.py"),
        "--index-selectors",
        '{"owner": "$.owner", "said": "$.public.said"}',
    )
    owners = ["eve", "bob", "dan", "ann", "cat"]
    for i, owner in enumerate(owners):
        cli(
            "instances",
            "create",
            "-m",
            name,
            "-i",
            f"i{i}",
            "--context",
            json.dumps({"owner": owner}),
        )
    for _ in range(3):
        cli("instances", "send-event", "-m", name, "-i", "i2", "-e", "say")

    def query(*args: str) -> list[tuple[str, str]]:
        found = cli("--json", "instances", "query", "-m", name, *args).json()["instances"]
        return [(f["slug"], f["indexValue"]) for f in found]

    everyone = query("--index", "owner", "--page-size", "2")
    assert everyone == sorted(((f"i{i}", o) for i, o in enumerate(owners)), key=lambda p: p[1])
    assert query("--index", "owner", "--sort", "desc", "--page-size", "2", "--limit", "3") == [
        ("i0", "eve"),
        ("i2", "dan"),
        ("i4", "cat"),
    ]
    assert query("--index", "owner", "--op", "gt", "--value", "bob", "--page-size", "1") == [
        ("i4", "cat"),
        ("i2", "dan"),
        ("i0", "eve"),
    ]
    assert query("--index", "said", "--op", "gte", "--value", "2", "--type", "number") == [
        ("i2", 3)
    ]

    table = cli(
        "instances", "query", "-m", name, "--index", "owner", "--op", "eq", "--value", "ann"
    )
    assert [line.split() for line in table.lines] == [["instance", "owner"], ["i3", "ann"]]
    half = cli("instances", "query", "-m", name, "--index", "owner", "--op", "eq", ok=False)
    assert half.status == 2 and half.error.endswith("(usage)")


def test_pause_resume_and_delete_all(cli: Cli, name: str) -> None:
    deploy_greeter(cli, name)
    for i in range(3):
        cli("instances", "create", "-m", name, "-i", f"i{i}")
    paused = cli("instances", "set-status", "-m", name, "-i", "i0", "-s", "paused", input="i0\n")
    assert paused.lines == ["i0 is paused"] and "warning:" in paused.stderr
    refused = cli("instances", "send-event", "-m", name, "-i", "i0", "-e", "say", ok=False)
    assert refused.error.endswith("(invalid-state)")
    cli("instances", "set-status", "-m", name, "-i", "i0", "-s", "running")
    cli("instances", "send-event", "-m", name, "-i", "i0", "-e", "say")

    deleted = cli("--json", "instances", "delete", "-m", name, "--all", "--yes").json()
    assert sorted(deleted["deleted"]) == ["i0", "i1", "i2"] and deleted["failed"] == []
    assert cli("--json", "instances", "list", "-m", name).json() == {"instances": []}
    assert cli("instances", "list", "-m", name).stderr.strip() == f"machine {name} has no instances"


def test_watch_prints_each_state(cli: Cli, name: str) -> None:
    deploy_greeter(cli, name)
    cli("instances", "create", "-m", name, "-i", "w")
    watch = cli.popen("instances", "watch", "-m", name, "-i", "w")
    try:
        assert watch.stdout is not None
        assert watch.stdout.readline() == 'listening  {"said": 0}\n'
        cli("instances", "send-event", "-m", name, "-i", "w", "-e", "say")
        assert watch.stdout.readline() == 'listening  {"said": 1}\n'
        cli("instances", "send-event", "-m", name, "-i", "w", "-e", "finish")
        assert watch.stdout.readline() == 'finished  {"said": 1}  (done)\n'
        assert watch.wait(10) == 0  # done: nothing more can come, the watch ends
    finally:
        watch.terminate()
        watch.communicate(timeout=10)


def test_watch_progress_streams_text_pieces_between_the_states(cli: Cli, name: str) -> None:
    streamer = FILES.parents[1] / "server" / "machines" / "streamer.py"
    cli("machines", "create", "-m", name, "--file", str(streamer))
    cli("instances", "create", "-m", name, "-i", "s")
    ask = json.dumps({"type": "ask", "input": {"words": ["Durable", " tokens", "!"]}})
    watch = cli.popen("instances", "watch", "-m", name, "-i", "s", "--progress")
    plain = cli.popen("--json", "instances", "watch", "-m", name, "-i", "s", "--progress")
    try:
        assert watch.stdout is not None and plain.stdout is not None
        assert watch.stdout.readline() == "idle  {}\n"
        assert json.loads(plain.stdout.readline())["state"] == "idle"
        cli("instances", "send-event", "-m", name, "-i", "s", "-e", ask)
        assert watch.stdout.readline() == "writing  {}\n"
        # The pieces on one line, ended by the next state.
        assert watch.stdout.readline() == "  writer: Durable tokens!\n"
        assert watch.stdout.readline() == 'idle  {"answer": "Durable  tokens !"}\n'
        documents = [json.loads(plain.stdout.readline()) for _ in range(5)]
        assert [d.get("state") for d in documents] == ["writing", None, None, None, "idle"]
        assert [d["progress"]["data"]["token"] for d in documents[1:4]] == [
            "Durable",
            " tokens",
            "!",
        ]
        assert {d["progress"]["invokeId"] for d in documents[1:4]} == {"writer"}
    finally:
        for process in (watch, plain):
            process.terminate()
            process.communicate(timeout=10)


def test_context_is_merged_over_the_initial_one_and_input_reaches_the_factory(
    cli: Cli, name: str
) -> None:
    cli("machines", "create", "-m", name, "--file", str(FILES / "purchase_order.py"))
    cli(
        "instances",
        "create",
        "-m",
        name,
        "-i",
        "po",
        "--input",
        '{"buyer": "ann"}',
        "--context",
        '{"note": "rush"}',
    )
    admin = cli("--json", "instances", "get", "-m", name, "-i", "po").json()
    assert admin["context"] == {"public": {"total": 0}, "buyer": "ann", "note": "rush"}
    bad = cli("instances", "create", "-m", name, "-i", "x", "--input", "{nope", ok=False)
    assert (bad.status, bad.error.endswith("(invalid-json)")) == (2, True)
