"""Machines: a compiled definition plus its implementations; the engine's entry points."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ._algorithm import plan, selection
from ._configuration import Configurations
from ._culprit import culprit, describe
from ._effects import Effect
from ._errors import ChartError, DefinitionError, ExecutionError
from ._implementations import Implementations
from ._macrostep import Run
from ._nodes import StateNode, Transition, TreeBuilder
from ._snapshot import Snapshot
from ._unhandled import explain

Event = dict[str, Any]


_STATUSES = frozenset(("active", "done", "error", "stopped"))


class Machine:
    def __init__(
        self, config: Mapping[str, Any], implementations: Implementations | None = None
    ) -> None:
        if not isinstance(config, Mapping):
            raise DefinitionError("invalid-config", "", "a machine config must be an object")
        self.config = config
        self.implementations = implementations or Implementations()
        self.id = str(config.get("id") or "(machine)")
        impls = self.implementations
        builder = TreeBuilder(impls.actions_list, impls.guard, impls.delay, impls.actor)
        self.root: StateNode = builder.build(config, self.id)
        self.nodes_by_id = builder.by_id
        self.configurations = Configurations(self.root, self.nodes_by_id)
        self._context = config.get("context")
        initial = Transition(self.root, None, None, None, [], True)
        initial.targets = tuple(_initial_nodes(self.root))
        self._initial_plan = plan((initial,), None, {}, self.configurations)

    def __repr__(self) -> str:
        return f"<Machine {self.id!r}>"

    def provide(
        self,
        actions: Mapping[str, Any] | None = None,
        guards: Mapping[str, Any] | None = None,
        actors: Mapping[str, Any] | None = None,
        delays: Mapping[str, Any] | None = None,
    ) -> Machine:
        """The same machine with some implementations replaced."""
        extra = Implementations(actions, guards, actors, delays)
        return Machine(self.config, self.implementations.merged(extra))

    def get_state_node(self, state_id: str) -> StateNode:
        return self.nodes_by_id[state_id.removeprefix("#")]

    # -- transitions ----------------------------------------------------------------------

    def initial_transition(
        self, input: Any = None, **overrides: Any
    ) -> tuple[Snapshot, list[Effect]]:
        """The first snapshot. ``context={...}`` is shallow-merged over the machine's
        initial context (computed from ``input`` when it is a function)."""
        event: Event = {"type": "xstate.init", "input": input}
        try:
            if callable(self._context):
                context = self._context(input)
            else:
                context = copy.deepcopy(self._context)
            given = overrides.get("context")
            if given is not None:
                # Shallow-merged, so a caller can supply a few fields (an id, an owner).
                base = context if isinstance(context, dict) else {}
                context = {**base, **copy.deepcopy(given)}
        except Exception as exc:
            _, where = culprit(exc.__traceback__)
            at = f" ({where})" if where else ""
            message = f"the context factory raised {describe(exc)}{at}"
            raise ExecutionError("action-failed", "", message) from exc
        run = Run(self, self.configurations.get([self.root]), context, {}, {}, event)
        _guard(run, self._start, run)
        return self._snapshot(run), run.effects

    def _start(self, run: Run) -> None:
        for action in self._initial_plan.steps:
            action.execute(run)
        run.config = self._initial_plan.target
        run.settle()

    def transition(
        self, snapshot: Snapshot | Mapping[str, Any], event: Any
    ) -> tuple[Snapshot, list[Effect]]:
        if not isinstance(snapshot, Snapshot):
            snapshot = self.resolve_snapshot(snapshot)
        ev = to_event(event)
        if snapshot.status != "active":
            return snapshot, []
        run = Run(
            self, snapshot.configuration, snapshot.context, snapshot.history, snapshot.children, ev
        )
        _guard(run, run.run, ev)
        snap = self._snapshot(run)
        if run.unhandled:
            snap.unhandled = explain(snapshot.configuration, ev["type"])
        return snap, run.effects

    def can(self, snapshot: Snapshot, event: Any) -> bool:
        ev = to_event(event)
        if snapshot.status != "active":
            return False
        run = Run(
            self, snapshot.configuration, snapshot.context, snapshot.history, snapshot.children, ev
        )
        found: list[Transition] = []
        _guard(run, lambda: found.extend(selection(run.config, ev["type"]).select(run)))
        return any(t.targets or t.actions for t in found)

    def _snapshot(self, run: Run) -> Snapshot:
        return Snapshot(
            self,
            run.config,
            run.context,
            run.status,
            run.output,
            run.error,
            run.history,
            run.children,
        )

    # -- persistence -------------------------------------------------------------------------

    def resolve_snapshot(self, data: Mapping[str, Any]) -> Snapshot:
        """A snapshot from its JSON form (``Snapshot.to_json``)."""
        if not isinstance(data, Mapping) or "value" not in data:
            raise ExecutionError("invalid-snapshot", "", "a snapshot needs a 'value'")
        config = self.configurations.from_value(data["value"])
        history: dict[str, tuple[str, ...]] = {}
        history_data = data.get("historyValue")
        if history_data:  # (most snapshots have none: no loop then)
            nodes = self.nodes_by_id
            for hid, ids in history_data.items():
                if hid not in nodes or any(i not in nodes for i in ids):
                    raise ExecutionError(
                        "invalid-snapshot", "", f"unknown state in history {hid!r}"
                    )
                history[hid] = tuple(ids)
        status = data.get("status", "active")
        if not isinstance(status, str) or status not in _STATUSES:
            raise ExecutionError("invalid-snapshot", "", f"invalid status {status!r}")
        children_data = data.get("children")
        children = {str(k): dict(v) for k, v in children_data.items()} if children_data else {}
        return Snapshot(
            self,
            config,
            data.get("context"),
            status,
            data.get("output"),
            data.get("error"),
            history,
            children,
        )


class Setup:
    """``setup(actions=..., guards=..., actors=..., delays=...)``: implementations that
    machine configs refer to by name."""

    def __init__(self, implementations: Implementations) -> None:
        self.implementations = implementations

    def create_machine(self, config: Mapping[str, Any]) -> Machine:
        return Machine(config, self.implementations)


def setup(
    actions: Mapping[str, Any] | None = None,
    guards: Mapping[str, Any] | None = None,
    actors: Mapping[str, Any] | None = None,
    delays: Mapping[str, Any] | None = None,
) -> Setup:
    return Setup(Implementations(actions, guards, actors, delays))


def create_machine(config: Mapping[str, Any]) -> Machine:
    return Machine(config)


def to_event(event: Any) -> Event:
    if type(event) is dict and type(event.get("type")) is str:
        return event
    if isinstance(event, str):
        return {"type": event}
    if isinstance(event, Mapping) and isinstance(event.get("type"), str):
        return event if isinstance(event, dict) else dict(event)
    raise ExecutionError(
        "invalid-event",
        "",
        f"an event is a string or an object with a string 'type', not {event!r}",
    )


def _initial_nodes(root: StateNode) -> list[StateNode]:
    out: list[StateNode] = []

    def visit(node: StateNode) -> None:
        if node in out:
            return
        out.append(node)
        if node.type == "compound" and node.initial is not None:
            visit(node.initial)
        elif node.type == "parallel":
            for child in node.real_children:
                visit(child)

    visit(root)
    return out


def _guard(run: Run, step: Any, *args: Any) -> None:
    try:
        step(*args)
    except ChartError:
        raise
    except RecursionError as exc:
        raise ExecutionError("action-failed", run.path, "recursion limit reached") from exc
    except Exception as exc:
        what, where = culprit(exc.__traceback__)
        code = "guard-failed" if what.startswith("guard ") else "action-failed"
        at = f" ({where})" if where else ""
        raise ExecutionError(code, run.path, f"{what} raised {describe(exc)}{at}") from exc
