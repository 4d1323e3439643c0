"""The statechart algorithm: everything that decides which states are exited and entered.

It follows XState v5 (``stateUtils.ts``), which follows the SCXML algorithm with
these rules:

- Selection: the active configuration is walked from the root; a compound state asks
  its active child first and uses its own transitions only if the child selected
  none; a parallel state collects the selections of all its regions (document order)
  and uses its own only if none did. Within a node, an exact event descriptor shadows
  partial ones (``foo.*``, ``*``); partial ones are tried longest first; the first
  transition whose guard passes wins.
- Eventless (``always``) transitions: for each active atomic state in document order,
  the first enabled transition of it or its nearest ancestor that has any.
- Conflicts: two selected transitions whose exit sets intersect cannot both run; the
  one from the descendant source wins, otherwise the earlier one.
- Transition domain: the source itself for a non-reentering transition whose targets
  are all inside it; otherwise the least common ancestor (any type) of source and
  targets. The exit set is every active descendant of the domain (plus the source
  when it re-enters itself).
- Entry set: targets, their default descendants (initial states, all regions of
  parallel states, recorded history or the history default), and ancestors up to the
  domain, with every region of each entered parallel ancestor.
- Order: exit actions in reverse document order, then transition actions in
  selection order, then entry actions in document order; history is recorded before
  any exit action runs.
- Final states: entering a final child of a compound state raises
  ``xstate.done.state.<parent>`` (with the final state's output); a parallel state
  whose regions are all final raises its own done event; a final child of the root
  ends the machine, after which every active state's exit actions run.

Everything that depends only on the configuration (and, for history targets, the
recorded history) is computed once and cached as a ``Plan`` on the configuration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._actions import Action, StartInvoke, StopInvoke
from ._configuration import Configuration, Configurations
from ._nodes import StateNode, Transition

if TYPE_CHECKING:
    from ._macrostep import Run

History = dict[str, tuple[str, ...]]


# -- selection ------------------------------------------------------------------------


def candidates(node: StateNode, event_type: str) -> list[Transition]:
    exact = node.transitions.get(event_type) or []
    partial = [
        d for d in node.transitions if d != event_type and _descriptor_matches(d, event_type)
    ]
    partial.sort(key=len, reverse=True)
    return [*exact, *(t for d in partial for t in node.transitions[d])]


def _descriptor_matches(descriptor: str, event_type: str) -> bool:
    if descriptor == "*":
        return True
    if not descriptor.endswith(".*"):
        return False
    tokens = event_type.split(".")
    for index, token in enumerate(descriptor.split(".")):
        if token == "*":
            return index == len(descriptor.split(".")) - 1
        if index >= len(tokens) or token != tokens[index]:
            return False
    return True


class Selection:
    """How to select transitions for one event type in one configuration: either a
    fixed answer (no guards involved) or a tree to evaluate."""

    __slots__ = ("fixed", "tree")

    def __init__(self, tree: Any) -> None:
        self.tree = tree
        self.fixed: tuple[Transition, ...] | None = None
        if not _has_guards(tree):
            self.fixed = tuple(_evaluate(tree, None)) if tree is not None else ()

    def select(self, run: Run) -> tuple[Transition, ...] | list[Transition]:
        if self.fixed is not None:
            return self.fixed
        return _evaluate(self.tree, run)


def selection(config: Configuration, event_type: str) -> Selection:
    found: Selection | None = config.selections.get(event_type)
    if found is None:
        found = config.selections[event_type] = Selection(
            _tree(config.nodes[0], config.node_set, event_type)
        )
    return found


def _tree(node: StateNode, active: frozenset[StateNode], event_type: str) -> Any:
    subs = []
    for child in node.children.values():
        if child in active:
            sub = _tree(child, active, event_type)
            if sub is not None:
                subs.append(sub)
    cands = candidates(node, event_type)
    if not subs and not cands:
        return None
    return (node.type == "parallel", subs, cands)


def _has_guards(tree: Any) -> bool:
    if tree is None:
        return False
    _, subs, cands = tree
    return any(t.guard is not None for t in cands) or any(_has_guards(s) for s in subs)


def _evaluate(tree: Any, run: Run | None) -> list[Transition]:
    parallel, subs, cands = tree
    if parallel:
        found: list[Transition] = []
        for sub in subs:
            found.extend(_evaluate(sub, run))
        if found:
            return found
    elif subs:
        found = _evaluate(subs[0], run)
        if found:
            return found
    for t in cands:
        if t.guard is None or t.guard.test(run):
            return [t]
    return []


def eventless(config: Configuration, history: History, run: Run) -> list[Transition]:
    if not config.always_nodes:
        return []
    enabled: list[Transition] = []
    for atomic in config.atomic:
        for node in (atomic, *atomic.proper_ancestors()):
            chosen = next((t for t in node.always if t.guard is None or t.guard.test(run)), None)
            if chosen is not None:
                if chosen not in enabled:
                    enabled.append(chosen)
                break
    return remove_conflicting(enabled, config, history)


# -- exit and entry sets ----------------------------------------------------------------


def effective_targets(
    t: Transition, history: History, nodes_by_id: dict[str, StateNode]
) -> list[StateNode]:
    out: list[StateNode] = []
    for target in t.targets or ():
        if target.type == "history":
            recorded = history.get(target.id)
            if recorded:
                out.extend(nodes_by_id[i] for i in recorded)
            else:
                default = _history_default(target)
                out.extend(effective_targets(default, history, nodes_by_id))
        else:
            out.append(target)
    return out


def _history_default(node: StateNode) -> Transition:
    if node.history_default is not None:
        return node.history_default
    parent = node.parent
    assert parent is not None
    default = Transition(parent, None, None, None, parent.initial_actions, False)
    default.targets = (parent,) if parent.initial is None else (parent.initial,)
    return default


def domain(t: Transition, history: History, nodes_by_id: dict[str, StateNode]) -> StateNode | None:
    targets = effective_targets(t, history, nodes_by_id)
    source = t.source
    if not t.reenter and all(x is source or x.is_descendant_of(source) for x in targets):
        return source
    lca = _lcca([*targets, source])
    if lca is not None:
        return lca
    if t.reenter:
        return None
    root = source
    while root.parent is not None:
        root = root.parent
    return root


def _lcca(nodes: list[StateNode]) -> StateNode | None:
    head, tail = nodes[0], nodes[1:]
    for ancestor in head.proper_ancestors():
        if all(x.is_descendant_of(ancestor) for x in tail):
            return ancestor
    return None


def exit_set(
    transitions: list[Transition],
    config: Configuration,
    history: History,
    nodes_by_id: dict[str, StateNode],
) -> set[StateNode]:
    out: set[StateNode] = set()
    for t in transitions:
        if not t.targets:
            continue
        d = domain(t, history, nodes_by_id)
        if d is None:
            out.update(config.nodes)
            continue
        if t.reenter and t.source is d:
            out.add(d)
        out.update(n for n in config.nodes if n.is_descendant_of(d))
    return out


def remove_conflicting(
    transitions: list[Transition] | tuple[Transition, ...], config: Configuration, history: History
) -> list[Transition]:
    if len(transitions) < 2:
        return list(transitions)
    nodes_by_id = config.by_id
    kept: list[Transition] = []
    for t1 in transitions:
        preempted = False
        to_remove: list[Transition] = []
        exits1 = _touched(t1, config, history, nodes_by_id)
        for t2 in kept:
            if exits1 & _touched(t2, config, history, nodes_by_id):
                if t1.source.is_descendant_of(t2.source):
                    to_remove.append(t2)
                else:
                    preempted = True
                    break
        if not preempted:
            kept = [t for t in kept if t not in to_remove]
            kept.append(t1)
    return kept


def _touched(
    t: Transition, config: Configuration, history: History, nodes_by_id: dict[str, StateNode]
) -> set[StateNode]:
    """The states a transition disturbs: its exit set; for a transition to a history
    state that resolves to its own atomic source (XState re-enters the source without
    leaving it), the source. Without that, such a transition does not conflict with
    another region's transition that exits the source's parent, and both run: the
    source and that transition's target end up active in one compound state."""
    exits = exit_set([t], config, history, nodes_by_id)
    if (
        not exits
        and not t.reenter
        and t.source.type in ("atomic", "final")
        and any(x.type == "history" for x in t.targets or ())
        and effective_targets(t, history, nodes_by_id) == [t.source]
    ):
        return {t.source}
    return exits


class EntrySet:
    def __init__(self) -> None:
        self.enter: set[StateNode] = set()
        self.default_entry: set[StateNode] = set()
        self.used_history = False


def entry_set(
    transitions: list[Transition],
    history: History,
    nodes_by_id: dict[str, StateNode],
    domains: list[StateNode | None],
) -> EntrySet:
    """``domains`` come from the history as it was before the exit. XState recomputes
    them from the history recorded during the exit, which can leave a parallel
    state's regions active without the state itself (an illegal configuration)."""
    es = EntrySet()
    for t, d in zip(transitions, domains, strict=True):
        for s in t.targets or ():
            if s.type != "history" and (t.source is not s or t.source is not d or t.reenter):
                es.enter.add(s)
                es.default_entry.add(s)
            _add_descendants(s, history, es, nodes_by_id)
        for s in effective_targets(t, history, nodes_by_id):
            ancestors = s.proper_ancestors(d)
            if d is not None and d.type == "parallel":
                ancestors.append(d)
            reentrancy = None if (t.source.parent is None and t.reenter) else d
            _add_ancestors(ancestors, history, es, nodes_by_id, reentrancy)
    return es


def _add_descendants(
    node: StateNode, history: History, es: EntrySet, nodes_by_id: dict[str, StateNode]
) -> None:
    if node.type == "history":
        es.used_history = True
        recorded = history.get(node.id)
        parent = node.parent
        assert parent is not None
        if recorded:
            targets = [nodes_by_id[i] for i in recorded]
            for s in targets:
                es.enter.add(s)
                _add_descendants(s, history, es, nodes_by_id)
            for s in targets:
                _add_ancestors(s.proper_ancestors(parent), history, es, nodes_by_id, None)
        else:
            default = _history_default(node)
            for s in default.targets or ():
                es.enter.add(s)
                if node.history_default is None and parent.type == "compound":
                    es.default_entry.add(parent)
                _add_descendants(s, history, es, nodes_by_id)
            for s in default.targets or ():
                _add_ancestors(s.proper_ancestors(parent), history, es, nodes_by_id, None)
        return
    if node.type == "compound":
        initial = node.initial
        assert initial is not None
        if initial.type != "history":
            es.enter.add(initial)
            es.default_entry.add(initial)
        _add_descendants(initial, history, es, nodes_by_id)
        _add_ancestors(initial.proper_ancestors(node), history, es, nodes_by_id, None)
    elif node.type == "parallel":
        for child in node.real_children:
            if not any(s is child or s.is_descendant_of(child) for s in es.enter):
                es.enter.add(child)
                es.default_entry.add(child)
                _add_descendants(child, history, es, nodes_by_id)


def _add_ancestors(
    ancestors: list[StateNode],
    history: History,
    es: EntrySet,
    nodes_by_id: dict[str, StateNode],
    reentrancy: StateNode | None,
) -> None:
    for anc in ancestors:
        if reentrancy is None or anc.is_descendant_of(reentrancy):
            es.enter.add(anc)
        if anc.type == "parallel":
            for child in anc.real_children:
                if not any(s is child or s.is_descendant_of(child) for s in es.enter):
                    es.enter.add(child)
                    _add_descendants(child, history, es, nodes_by_id)


# -- plans ------------------------------------------------------------------------------


class RaiseDone(Action):
    """Raise ``xstate.done.state.<id>`` (with the final state's output, if any)."""

    __slots__ = ("final", "node")

    def __init__(self, node: StateNode, final: StateNode | None) -> None:
        super().__init__()
        self.node = node
        self.final = final

    def execute(self, run: Run) -> None:
        event: dict[str, Any] = {"type": f"xstate.done.state.{self.node.id}"}
        if self.final is not None and self.final.output is not None:
            event["output"] = run.resolve_output(self.final.output)
        run.queue.append(event)


class MachineDone(Action):
    __slots__ = ("completion",)

    def __init__(self, completion: StateNode) -> None:
        super().__init__()
        self.completion = completion

    def execute(self, run: Run) -> None:
        run.finish(self.completion)


class Plan:
    """A microstep for fixed transitions in a fixed configuration."""

    __slots__ = ("history_updates", "steps", "target", "used_history")

    def __init__(
        self,
        steps: list[Action],
        target: Configuration,
        history_updates: list[tuple[str, tuple[str, ...]]],
        used_history: bool,
    ) -> None:
        self.steps = steps
        self.target = target
        self.history_updates = history_updates
        self.used_history = used_history


def plan(
    transitions: list[Transition] | tuple[Transition, ...],
    config: Configuration | None,
    history: History,
    configurations: Configurations,
) -> Plan:
    """``config`` None means the initial microstep (nothing active yet)."""
    initial = config is None
    nodes_by_id = configurations.by_id
    chosen = (
        list(transitions) if config is None else remove_conflicting(transitions, config, history)
    )
    exits = (
        []
        if config is None
        else sorted(exit_set(chosen, config, history, nodes_by_id), key=lambda n: -n.order)
    )
    active = set() if config is None else set(config.nodes) - set(exits)
    updates: list[tuple[str, tuple[str, ...]]] = []
    active_before = config.nodes if config is not None else ()
    for node in exits:
        for h in node.history_children:
            if h.history == "deep":
                recorded = tuple(
                    n.id for n in active_before if n.is_descendant_of(node) and not n.children
                )
            else:
                recorded = tuple(n.id for n in active_before if n.parent is node)
            updates.append((h.id, recorded))
    new_history = {**history, **dict(updates)} if updates else history
    steps: list[Action] = []
    for node in exits:
        steps.extend(node.exit)
        steps.extend(StopInvoke(inv.id) for inv in node.invoke)
    for t in chosen:
        steps.extend(t.actions)
    domains = [domain(t, history, nodes_by_id) for t in chosen]
    es = entry_set(chosen, new_history, nodes_by_id, domains)
    _complete_ancestors(es, active, new_history, nodes_by_id)
    if initial:
        es.default_entry.add(configurations.root)
    done_parallels: set[StateNode] = set()
    machine_done = False
    for node in sorted(es.enter, key=lambda n: n.order):
        active.add(node)
        steps.extend(node.entry)
        steps.extend(StartInvoke(inv) for inv in node.invoke)
        if node in es.default_entry and node.type == "compound":
            steps.extend(node.initial_actions)
        if node.type != "final":
            continue
        parent = node.parent
        marker = None if parent is None else parent if parent.type == "parallel" else parent.parent
        completion = node
        if parent is not None and parent.type == "compound":
            steps.append(RaiseDone(parent, node))
        while (
            marker is not None
            and marker.type == "parallel"
            and marker not in done_parallels
            and _in_final(active, marker)
        ):
            done_parallels.add(marker)
            steps.append(RaiseDone(marker, None))
            completion = marker
            marker = marker.parent
        if marker is None:
            machine_done = True
            steps.append(MachineDone(completion))
    if machine_done:
        for node in sorted(active, key=lambda n: -n.order):
            steps.extend(node.exit)
    used_history = es.used_history or any(
        x.type == "history" for t in chosen for x in t.targets or ()
    )
    return Plan(steps, configurations.get(active), updates, used_history)


def _complete_ancestors(
    es: EntrySet, remaining: set[StateNode], history: History, nodes_by_id: dict[str, StateNode]
) -> None:
    """Enter the missing ancestors of entered states (with the other regions of
    parallel ones). XState's entry set can lack them when a history target re-enters
    its source while another region's transition in the same microstep exits that
    source's ancestors; SCXML's would not."""
    for node in sorted(es.enter, key=lambda n: n.order):
        missing: list[StateNode] = []
        parent = node.parent
        while parent is not None and parent not in remaining and parent not in es.enter:
            missing.append(parent)
            parent = parent.parent
        if missing:
            _add_ancestors(missing, history, es, nodes_by_id, None)


def _in_final(active: set[StateNode], node: StateNode) -> bool:
    if node.type == "compound":
        return any(c.type == "final" and c in active for c in node.children.values())
    if node.type == "parallel":
        return all(_in_final(active, c) for c in node.real_children)
    return node.type == "final"
