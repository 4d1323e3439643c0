"""The engine's public API: snapshots, effects, errors, implementations."""

from __future__ import annotations

import json
from typing import Any

import pytest

import backstate.chart as chart
from backstate.chart import (
    CancelEvent,
    DefinitionError,
    EmitEvent,
    ExecutionError,
    LogMessage,
    RunAction,
    ScheduleEvent,
    SendEvent,
    StartActor,
    StopActor,
    assign,
    create_machine,
    emit,
    enqueue_actions,
    log,
    raise_,
    send_parent,
    send_to,
    setup,
    spawn_child,
    stop_child,
)

PUBLIC_API = [
    "CancelEvent",
    "ChartError",
    "DefinitionError",
    "Effect",
    "EmitEvent",
    "ExecutionError",
    "LogMessage",
    "Machine",
    "RunAction",
    "ScheduleEvent",
    "SendEvent",
    "Setup",
    "Snapshot",
    "StartActor",
    "StopActor",
    "and_",
    "assign",
    "cancel",
    "create_machine",
    "emit",
    "enqueue_actions",
    "log",
    "not_",
    "or_",
    "raise_",
    "send_parent",
    "send_to",
    "setup",
    "spawn_child",
    "state_in",
    "stop_child",
    "to_event",
]


def test_public_api_does_not_drift() -> None:
    assert sorted(chart.__all__) == PUBLIC_API
    for name in PUBLIC_API:
        assert hasattr(chart, name)


def notify(context: Any, event: Any) -> None:
    raise AssertionError("custom actions are effects; the engine must not call them")


COUNTER = setup(
    actions={"notify": notify, "inc": assign({"count": lambda c, e: c["count"] + e.get("by", 1)})},
    guards={"below": lambda c, e, p: c["count"] < p["max"]},
).create_machine(
    {
        "id": "counter",
        "initial": "idle",
        "context": {"count": 0},
        "states": {
            "idle": {
                "tags": ["resting"],
                "on": {
                    "INC": {
                        "guard": {"type": "below", "params": {"max": 3}},
                        "actions": ["inc", "notify"],
                    },
                    "GO": "busy",
                },
            },
            "busy": {"after": {"500": "idle"}, "tags": ["working"], "on": {"STOP": "done"}},
            "done": {"type": "final", "output": lambda c, e: {"final": c["count"]}},
        },
        "output": lambda c, e: e["output"],
    }
)


def test_snapshot_api() -> None:
    s, effects = COUNTER.initial_transition()
    assert (s.value, s.context, s.status, effects) == ("idle", {"count": 0}, "active", [])
    assert s.has_tag("resting") and not s.has_tag("working")
    assert s.matches("idle") and not s.matches("busy")
    assert s.can("INC") and s.can({"type": "GO"}) and not s.can("STOP")
    assert s.state_strings == ["idle"]
    assert s.atomic_ids == ["counter.idle"]


def test_custom_actions_are_effects_with_the_context_of_their_moment() -> None:
    s, _ = COUNTER.initial_transition()
    s, effects = COUNTER.transition(s, {"type": "INC", "by": 2})
    assert s.context == {"count": 2}
    [effect] = effects
    assert isinstance(effect, RunAction) and effect.name == "notify"
    assert effect.context == {"count": 2} and effect.event == {"type": "INC", "by": 2}


def test_guard_params_block_transition() -> None:
    s, _ = COUNTER.initial_transition()
    s, _ = COUNTER.transition(s, {"type": "INC", "by": 3})
    s2, effects = COUNTER.transition(s, "INC")
    assert s2.context == {"count": 3} and effects == []
    assert not s2.can("INC")


def test_after_schedules_and_cancels_timers() -> None:
    s, _ = COUNTER.initial_transition()
    s, effects = COUNTER.transition(s, "GO")
    assert effects == [
        ScheduleEvent(
            "xstate.after.500.counter.busy",
            {"type": "xstate.after.500.counter.busy"},
            500,
            "#_self",
        )
    ]
    s, effects = COUNTER.transition(s, "STOP")
    assert effects == [CancelEvent("xstate.after.500.counter.busy")]
    assert s.status == "done" and s.output == {"final": 0}
    done, effects = COUNTER.transition(s, "GO")
    assert done is s and effects == []


def test_snapshot_json_round_trip_continues_identically() -> None:
    s, _ = COUNTER.initial_transition()
    s, _ = COUNTER.transition(s, "INC")
    data = json.loads(json.dumps(s.to_json()))
    restored = COUNTER.resolve_snapshot(data)
    assert restored.value == s.value and restored.context == s.context
    a, ea = COUNTER.transition(s, "GO")
    b, eb = COUNTER.transition(data, "GO")  # a JSON snapshot is accepted directly
    assert a.to_json() == b.to_json() and ea == eb


def test_definition_errors_name_the_state_path() -> None:
    cases = [
        ({"initial": "a", "states": {"a": {"on": {"E": "nowhere"}}}}, "unknown-target", "a"),
        ({"states": {"a": {}}}, "missing-initial", ""),
        ({"initial": "x", "states": {"a": {}}}, "invalid-initial", ""),
        ({"initial": "a", "states": {"a": {"id": "dup"}, "b": {"id": "dup"}}}, "duplicate-id", "b"),
        ({"initial": "a", "states": {"a": {"entry": "nope"}}}, "unknown-action", "a"),
        ({"initial": "a", "states": {"a": {"on": {"E": {"guard": "nope"}}}}}, "unknown-guard", "a"),
        ({"initial": "a", "states": {"a": {"invoke": {"src": "nope"}}}}, "unknown-actor", "a"),
        ({"initial": "a", "states": {"a": {"after": {"later": "a"}}}}, "unknown-delay", "a"),
        (
            {"initial": "a", "states": {"a": {"type": "history", "history": "sideways"}}},
            "invalid-history",
            "a",
        ),
        ({"initial": "a", "states": {"a": {"on": {"fo*o": "a"}}}}, "invalid-event-descriptor", "a"),
        ({"initial": "a", "states": {"a": {"type": "weird"}}}, "invalid-config", "a"),
    ]
    for config, code, path in cases:
        with pytest.raises(DefinitionError) as info:
            create_machine(config)
        assert (info.value.code, info.value.path) == (code, path), config


def test_a_failing_guard_is_an_execution_error_and_changes_nothing() -> None:
    def broken(context: Any, event: Any) -> bool:
        raise ValueError("boom")

    m = setup(guards={"broken": broken}).create_machine(
        {
            "initial": "a",
            "context": {"n": 1},
            "states": {"a": {"on": {"E": {"guard": "broken", "target": "b"}}}, "b": {}},
        }
    )
    s, _ = m.initial_transition()
    with pytest.raises(ExecutionError) as info:
        m.transition(s, "E")
    assert info.value.code == "guard-failed" and isinstance(info.value.__cause__, ValueError)
    assert info.value.message.startswith("guard 'broken' raised ValueError: boom (")
    assert "in broken" in info.value.message
    assert s.value == "a" and s.context == {"n": 1}


def test_invalid_events_are_rejected() -> None:
    s, _ = COUNTER.initial_transition()
    for bad in (None, 3, {"no": "type"}, {"type": 5}):
        with pytest.raises(ExecutionError) as info:
            COUNTER.transition(s, bad)
        assert info.value.code == "invalid-event"


def test_eventless_loop_is_detected() -> None:
    m = create_machine(
        {
            "initial": "a",
            "context": {"n": 0},
            "states": {"a": {"always": {"actions": assign({"n": lambda c, e: c["n"] + 1})}}},
        }
    )
    with pytest.raises(ExecutionError) as info:
        m.initial_transition()
    assert info.value.code == "infinite-loop"


def test_builtin_effects_in_order() -> None:
    m = setup(actors={"worker": lambda i: i}).create_machine(
        {
            "id": "m",
            "initial": "a",
            "states": {
                "a": {
                    "on": {
                        "GO": {
                            "target": "b",
                            "actions": [
                                send_to("other", {"type": "HELLO"}),
                                send_parent(lambda c, e: {"type": "UP", "from": e["type"]}),
                                raise_({"type": "LATER"}, delay=50, id="t1"),
                                log(lambda c, e: "went", label="L"),
                                emit({"type": "went"}),
                                spawn_child("worker", id="w1", input={"x": 1}),
                            ],
                        }
                    }
                },
                "b": {
                    "invoke": {
                        "id": "job",
                        "src": "worker",
                        "input": lambda c, e: {"from": e["type"]},
                    },
                    "on": {"STOP": {"target": "a", "actions": [stop_child("w1")]}},
                },
            },
        }
    )
    s, _ = m.initial_transition()
    s, effects = m.transition(s, "GO")
    assert effects[:5] == [
        SendEvent("other", {"type": "HELLO"}),
        SendEvent("#_parent", {"type": "UP", "from": "GO"}),
        ScheduleEvent("t1", {"type": "LATER"}, 50, "#_self"),
        LogMessage("L", "went"),
        EmitEvent({"type": "went"}),
    ]
    spawn, invoke = effects[5:]
    assert isinstance(spawn, StartActor) and (spawn.id, spawn.kind, spawn.input) == (
        "w1",
        "spawn",
        {"x": 1},
    )
    assert isinstance(invoke, StartActor) and (invoke.id, invoke.kind, invoke.input) == (
        "job",
        "invoke",
        {"from": "GO"},
    )
    assert set(s.children) == {"w1", "job"}
    s, effects = m.transition(s, "STOP")
    assert effects == [StopActor("job"), StopActor("w1")]
    assert s.children == {}


def _actor_effects(effects: list[Any]) -> list[tuple[str, str]]:
    return [
        (type(e).__name__, e.to if isinstance(e, SendEvent | ScheduleEvent) else e.id)
        for e in effects
        if isinstance(e, StartActor | StopActor | SendEvent | ScheduleEvent)
    ]


def test_an_actor_stopped_in_the_macrostep_that_started_it_is_never_started() -> None:
    # XState defers starts to the end of the macrostep and skips actors stopped by
    # then: the runner must not see the start, nor what was sent to the actor.
    m = setup(actors={"worker": lambda i: i}).create_machine(
        {
            "initial": "a",
            "states": {
                "a": {
                    "entry": [send_to("x", {"type": "PING"}, delay=10)],
                    "invoke": {"id": "x", "src": "worker"},
                    "exit": [send_to("x", {"type": "BYE"})],
                    "always": "b",
                },
                "b": {
                    "entry": [spawn_child("worker", id="w"), send_to("w", {"type": "PING"})],
                    "always": {"target": "c", "actions": [stop_child("w")]},
                },
                "c": {},
            },
        }
    )
    s, effects = m.initial_transition()
    assert (s.value, s.children, _actor_effects(effects)) == ("c", {}, [])


def test_an_invocation_restarted_within_a_macrostep_starts_once() -> None:
    m = setup(actors={"worker": lambda i: i}).create_machine(
        {
            "initial": "a",
            "context": {"n": 0},
            "states": {
                "a": {
                    "invoke": {"id": "x", "src": "worker", "input": lambda c, e: c["n"]},
                    "always": {
                        "guard": lambda c, e: c["n"] == 0,
                        "target": "b",
                        "actions": [assign({"n": 1})],
                    },
                },
                "b": {"always": "a"},
            },
        }
    )
    s, effects = m.initial_transition()
    starts = [e for e in effects if isinstance(e, StartActor)]
    assert (s.value, list(s.children), _actor_effects(effects)) == (
        "a",
        ["x"],
        [("StartActor", "x")],
    )
    assert starts[0].input == 1


def test_sends_to_a_running_actor_survive_a_restart_that_never_starts() -> None:
    # x runs before the macrostep, gets BYE and stops; the x started next is stopped
    # in the same macrostep, which cancels only what concerns that second x.
    m = setup(actors={"worker": lambda i: i}).create_machine(
        {
            "initial": "a",
            "states": {
                "a": {
                    "invoke": {"id": "x", "src": "worker"},
                    "exit": [send_to("x", {"type": "BYE"})],
                    "on": {"GO": "b"},
                },
                "b": {
                    "entry": [send_to("x", {"type": "PING"})],
                    "invoke": {"id": "x", "src": "worker"},
                    "always": "c",
                },
                "c": {},
            },
        }
    )
    s, _ = m.initial_transition()
    s, effects = m.transition(s, "GO")
    assert (s.value, s.children) == ("c", {})
    assert _actor_effects(effects) == [("SendEvent", "x"), ("StopActor", "x")]
    assert effects[0] == SendEvent("x", {"type": "BYE"})


def test_done_and_error_events_from_actors() -> None:
    m = setup(actors={"fetch": lambda i: i}).create_machine(
        {
            "initial": "loading",
            "context": {},
            "states": {
                "loading": {
                    "invoke": {
                        "id": "f",
                        "src": "fetch",
                        "onDone": {
                            "target": "ok",
                            "actions": assign({"result": lambda c, e: e["output"]}),
                        },
                    }
                },
                "ok": {},
            },
        }
    )
    s, _ = m.initial_transition()
    assert "f" in s.children
    s, _ = m.transition(s, {"type": "xstate.done.actor.f", "output": 42})
    assert (s.value, s.context, s.children) == ("ok", {"result": 42}, {})
    s, _ = m.initial_transition()
    s, _ = m.transition(s, {"type": "xstate.error.actor.f", "error": {"message": "x"}})
    assert (s.status, s.error) == ("error", {"message": "x"})


def test_enqueue_actions_checks_guards_and_assigns_in_order() -> None:
    def collect(context: Any, event: Any, enqueue: Any) -> None:
        enqueue.assign({"n": lambda c, e: c["n"] + 1})
        if enqueue.check("big"):
            enqueue("notify")
        enqueue.raise_({"type": "NEXT"})

    m = setup(
        actions={"notify": notify}, guards={"big": lambda c, e: e.get("big", False)}
    ).create_machine(
        {
            "initial": "a",
            "context": {"n": 0},
            "states": {
                "a": {"on": {"E": {"actions": enqueue_actions(collect)}, "NEXT": "b"}},
                "b": {},
            },
        }
    )
    s, _ = m.initial_transition()
    s, effects = m.transition(s, {"type": "E", "big": True})
    assert s.value == "b" and s.context == {"n": 1}
    assert [type(e) for e in effects] == [RunAction] and effects[0].context == {"n": 1}


def test_provide_replaces_implementations() -> None:
    m = COUNTER.provide(guards={"below": lambda c, e, p: False})
    s, _ = m.initial_transition()
    assert not s.can("INC") and COUNTER.initial_transition()[0].can("INC")


def test_context_factory_receives_input() -> None:
    m = create_machine(
        {"initial": "a", "context": lambda input: {"user": input["user"]}, "states": {"a": {}}}
    )
    s, _ = m.initial_transition({"user": "ada"})
    assert s.context == {"user": "ada"}


def test_invalid_snapshot_is_rejected() -> None:
    for bad in ({}, {"value": "nowhere"}, {"value": "idle", "status": "sleeping"}):
        with pytest.raises(ExecutionError) as info:
            COUNTER.resolve_snapshot(bad)
        assert info.value.code == "invalid-snapshot"


def test_meta_of_active_states() -> None:
    m = create_machine(
        {
            "id": "m",
            "initial": "a",
            "meta": {"root": True},
            "states": {"a": {"meta": {"title": "A"}, "on": {"GO": "b"}}, "b": {}},
        }
    )
    s, _ = m.initial_transition()
    assert s.meta == {"m": {"root": True}, "m.a": {"title": "A"}}
    s, _ = m.transition(s, "GO")
    assert s.meta == {"m": {"root": True}}
