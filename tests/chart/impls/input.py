"""Implementations for cases ported from xstate packages/core/test/input.test.ts."""

from backstate.chart import assign, enqueue_actions, send_parent, setup, spawn_child

_log: list = []


def bind_log(log):
    global _log
    _log = log


def record_count(context, event):
    _log.append(f"count={context['count']}")


def record_input_greeting(context, event):
    _log.append(event["input"]["greeting"])


def _greet_parent(context, event, enqueue):
    # XState's child asserts both context.greeting and event.input.greeting.
    if context["greeting"] == "hello" and event["input"]["greeting"] == "hello":
        enqueue(send_parent({"type": "GREETED"}))


def _report_input(context, event, enqueue):
    if context["input"] in (42, 142):
        enqueue(send_parent({"type": f"INPUT_WAS_{context['input']}"}))


def echo(input):
    return input


ACTIONS = {
    "assignCountFromInput": assign({"count": lambda context, event: event["input"]["startCount"]}),
    "recordCount": record_count,
    "recordInputGreeting": record_input_greeting,
    "assignCountFromInputNumber": assign({"count": lambda context, event: event["input"]}),
    "spawnChildWithCountPlus100": spawn_child(
        "child", id="child", input=lambda context, event: context["count"] + 100
    ),
    "saveOutput": assign({"output": lambda context, event: event["output"]}),
}

ACTORS = {
    "greetingChild": setup().create_machine(
        {"context": lambda input: dict(input), "entry": [enqueue_actions(_greet_parent)]}
    ),
    "child": setup().create_machine(
        {"context": lambda input: {"input": input}, "entry": [enqueue_actions(_report_input)]}
    ),
    "echo": echo,
}
