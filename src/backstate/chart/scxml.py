"""Convert SCXML documents into backstate.chart machine configs (XState v5 shape).

Supported: ``<scxml>`` (``initial`` attribute or first child), ``<state>``, ``<parallel>``,
``<final>``, ``<history>`` (shallow/deep, default transition), ``initial`` attributes and
``<initial>`` elements (child targets only, like XState), ``<transition>`` (event lists,
SCXML prefix matching as ``foo.*``, ``*``, eventless as ``always``, external transitions
as ``reenter: true``, targetless, multiple targets), ``<onentry>``/``<onexit>`` with
``<raise>``, ``<send>`` (no target: the external queue ``#_self``; ``#_internal``,
``#_parent``, ``#_<invokeid>``; ``event`` or ``eventexpr``, ``delay`` or ``delayexpr``,
a literal ``id``), ``<cancel sendid|sendidexpr>``, ``<log>``, ``<if>/<elseif>/<else>``,
``<datamodel>``/``<data>``, ``<assign>``, ``<script>`` of plain assignments, ``<invoke>``
of an inline ``<content><scxml>`` child machine, and ``done.state.X``/``done.invoke.X``
(``xstate.done.state.X``/``xstate.done.actor.X``).
Ids are sanitised: ``.`` becomes ``$``.

Expressions (``cond``, ``expr``) are read as a small ECMAScript subset: number, string,
``true/false/null/undefined`` literals, ``<data>`` ids, ``In('id')``, a few ``Math``
functions, unary ``! - +``, ``* / % + -``, ``< <= > >=``, ``=== !== == !=`` (``==`` is
treated as ``===``), ``&& ||`` and parentheses. Anything else, and any construct not
listed above, raises ``DefinitionError("unsupported-scxml")``; its message names every
such construct of the document (``"<send>: ...; <assign>: ..."``), and says why where the
document uses it on purpose to raise an SCXML error event (which XState has not).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from operator import add, ge, gt, le, lt, mul, sub, truediv
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import DefinitionError

if TYPE_CHECKING:
    from . import Machine

__all__ = ["NEEDS_DATAMODEL", "load_scxml", "machine_from_scxml", "sanitize_id"]

NEEDS_DATAMODEL = "needs an ECMAScript datamodel"
STATE_TAGS = ("state", "parallel", "final", "history")
_STATE_CHILDREN = (*STATE_TAGS, "onentry", "onexit", "transition", "invoke", "initial", "datamodel")
_SCXML_TYPES = (None, "scxml", "http://www.w3.org/TR/scxml/", "http://www.w3.org/TR/scxml")
_SEND_TYPES = (None, "scxml", "http://www.w3.org/TR/scxml/#SCXMLEventProcessor")
_BASIC_HTTP = "http://www.w3.org/TR/scxml/#BasicHTTPEventProcessor"
_TOKEN = re.compile(
    r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
    r"|([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)|(===|!==|==|!=|<=|>=|&&|\|\||\+\+|--|[-+*/%<>!(),]))"
)
_LEVELS = ("||", "&&", "=== !== == !=", "< <= > >=", "+ -", "* / %")  # JS precedence
_POWER = {op: power for power, ops in enumerate(_LEVELS, 1) for op in ops.split()}
_CONSTANTS = {"true": True, "false": False, "null": None, "undefined": None}
_FUNCTIONS: dict[str, Callable[..., Any]] = {"Math.abs": abs, "Math.min": min, "Math.max": max}
_FUNCTIONS |= {f"Math.{f.__name__}": f for f in (math.pow, math.floor, math.ceil, math.sqrt)}
_COMPARE = {"<": lt, "<=": le, ">": gt, ">=": ge}
_ARITHMETIC = {"+": add, "-": sub, "*": mul, "/": truediv, "%": math.fmod}
_DONE = {"done.state": "xstate.done.state", "done.invoke": "xstate.done.actor"}
_SEND_EXPRS = ("targetexpr", "typeexpr", "idlocation", "namelist")
_INVOKE_EXPRS = ("srcexpr", "typeexpr", "idlocation", "namelist")
_SYSTEM_VARIABLES = ("_event", "_sessionid", "_name", "_ioprocessors", "_x")
_STATEMENT = re.compile(r"([A-Za-z_$][\w$]*)\s*(?:([-+*/%]?)=(?!=)\s*(.+)|(\+\+|--))", re.S)

Node = tuple[Any, ...]
Fn = Callable[[Any, Any], Any]
T = TypeVar("T")
# Why SCXML documents test these on purpose: their errors are events there, and XState
# (like backstate) has no error events.
_ERROR_EXECUTION = "SCXML raises error.execution"


def sanitize_id(state_id: str) -> str:
    """SCXML ids may contain '.', a path separator here; XState replaces it with '$'."""
    return state_id.replace(".", "$")


def load_scxml(text: str) -> dict[str, Any]:
    """Parse an SCXML document into a machine config dict (JSON shape, plus callables
    for expressions and ``Machine`` objects for invoked documents)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise DefinitionError("unsupported-scxml", "", f"invalid XML: {exc}") from exc
    return _Converter(root).machine()


def machine_from_scxml(text: str) -> Machine:
    """``create_machine(load_scxml(text))``."""
    from . import create_machine

    return create_machine(load_scxml(text))


def _local(el: ET.Element) -> str:
    return el.tag.rsplit("}", 1)[-1] if isinstance(el.tag, str) else ""


def _kids(el: ET.Element, *names: str) -> list[ET.Element]:
    return [c for c in el if _local(c) in names]


def _unsupported(where: str, why: str) -> DefinitionError:
    return DefinitionError("unsupported-scxml", "", f"<{where}>: {why}")


def _delay_ms(text: str) -> int:
    match = re.fullmatch(r"\s*(\d*\.?\d+)(ms|s)\s*", text)
    if not match:
        raise _unsupported("send", f"cannot read delay {text!r}")
    return round(float(match[1]) * (1000 if match[2] == "s" else 1))


# -- the ECMAScript subset ----------------------------------------------------------------


def _truthy(value: Any) -> bool:
    return not (isinstance(value, float) and math.isnan(value)) and bool(value)


def _js_str(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "undefined" if value is None else str(value).lower()
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _num(value: Any) -> Any:
    if isinstance(value, int | float):
        return int(value) if isinstance(value, bool) else value
    try:
        return float(value) if value.strip() else 0
    except (AttributeError, ValueError):
        return math.nan


def _binary(op: str, a: Any, b: Any) -> Any:
    if op == "+" and (isinstance(a, str) or isinstance(b, str)):
        return _js_str(a) + _js_str(b)
    if op in ("===", "==", "!==", "!="):
        kinds = {float if type(v) is int else type(v) for v in (a, b)}
        return (len(kinds) == 1 and a == b) == (op in ("===", "=="))
    if op in _COMPARE:
        both_strings = isinstance(a, str) and isinstance(b, str)
        return _COMPARE[op](a, b) if both_strings else _COMPARE[op](_num(a), _num(b))
    x, y = _num(a), _num(b)
    if op in "/%" and y == 0:
        return math.nan if op == "%" or not x or math.isnan(x) else math.copysign(math.inf, x)
    return _ARITHMETIC[op](x, y)


def _evaluate(node: Node, context: Any) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "var":
        return context.get(node[1]) if isinstance(context, Mapping) else None
    if kind == "call":
        return _FUNCTIONS[node[1]](*(_num(_evaluate(arg, context)) for arg in node[2]))
    if kind in ("not", "neg", "pos"):
        value = _evaluate(node[1], context)
        return not _truthy(value) if kind == "not" else _num(value) * (-1 if kind == "neg" else 1)
    left = _evaluate(node[2], context)
    if node[1] == "&&":
        return _evaluate(node[3], context) if _truthy(left) else left
    if node[1] == "||":
        return left if _truthy(left) else _evaluate(node[3], context)
    return _binary(node[1], left, _evaluate(node[3], context))


def _has_in(node: Node) -> bool:
    return node[0] == "in" or any(isinstance(n, tuple) and _has_in(n) for n in node[1:])


class _Parser:
    """Pratt parser for the subset. Nodes: ("lit", v), ("var", name), ("in", state_id),
    ("call", name, [args]), ("not"|"neg"|"pos", operand), ("bin", op, left, right)."""

    def __init__(self, source: str, names: set[str], where: str) -> None:
        self.source, self.names, self.where = source.strip(), names, where
        self.tokens: list[tuple[str, str]] = []
        self.pos = 0
        while self.pos < len(self.source):
            match = _TOKEN.match(self.source, self.pos)
            if not match:
                raise self.error()
            kinds = ("num", "str", "name", "op")
            self.tokens += [(k, t) for k, t in zip(kinds, match.groups(), strict=True) if t]
            self.pos = match.end()
        self.pos = 0

    def error(self) -> DefinitionError:
        return _unsupported(self.where, f"{NEEDS_DATAMODEL} for {self.source!r}")

    def peek(self) -> str:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else ""

    def take(self, text: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens) or text not in (None, self.tokens[self.pos][1]):
            raise self.error()
        self.pos += 1
        return self.tokens[self.pos - 1]

    def parse(self) -> Node:
        node = self.expression(0)
        if self.pos != len(self.tokens):
            raise self.error()
        return node

    def expression(self, min_power: int) -> Node:
        left = self.unary()
        while _POWER.get(op := self.peek(), 0) > min_power:
            self.pos += 1
            left = ("bin", op, left, self.expression(_POWER[op]))
        return left

    def unary(self) -> Node:
        kind, text = self.take()
        if kind == "op" and text in ("!", "-", "+"):
            return ({"!": "not", "-": "neg", "+": "pos"}[text], self.unary())
        if kind == "op" and text == "(":
            node = self.expression(0)
            self.take(")")
            return node
        if kind == "num":
            return ("lit", float(text) if "." in text else int(text))
        if kind == "str":
            return ("lit", re.sub(r"\\(.)", r"\1", text[1:-1]))
        if kind == "name" and text in _CONSTANTS:
            return ("lit", _CONSTANTS[text])
        if kind == "name" and text in self.names:
            return ("var", text)
        if kind == "name" and (text in _FUNCTIONS or text == "In"):
            self.take("(")
            args = [self.expression(0)]
            while self.peek() == ",":
                self.pos += 1
                args.append(self.expression(0))
            self.take(")")
            if text != "In":
                return ("call", text, args)
            if len(args) == 1 and args[0][0] == "lit" and isinstance(args[0][1], str):
                return ("in", sanitize_id(args[0][1]))
        raise self.error()


# -- the converter ------------------------------------------------------------------------


class _Converter:
    def __init__(self, root: ET.Element) -> None:
        if _local(root) != "scxml":
            raise _unsupported(_local(root), "the document root must be <scxml>")
        if root.get("datamodel") not in (None, "ecmascript", "null"):
            raise _unsupported("scxml", f"datamodel {root.get('datamodel')!r}")
        if root.get("binding", "early") != "early":
            raise _unsupported("scxml", f"late binding {NEEDS_DATAMODEL}")
        self.root = root
        self.data = [d for d in self._walk(root) if _local(d) == "data"]
        self.names = {d.get("id", "") for d in self.data}
        self.anonymous = 0
        self.problems: dict[str, None] = {}  # every construct rejected, in document order

    def attempt(self, fallback: T, convert: Callable[..., T], *args: Any) -> T:
        """``convert(*args)``, or ``fallback`` once its problem is noted: a document's
        every problem is reported at once, not just the first."""
        try:
            return convert(*args)
        except DefinitionError as exc:
            self.problems[exc.message] = None
            return fallback

    def _walk(self, el: ET.Element) -> Iterator[ET.Element]:
        """Pre-order over this document, not descending into invoked documents."""
        yield el
        for child in el:
            if _local(child) not in ("invoke", "content"):
                yield from self._walk(child)

    def machine(self) -> dict[str, Any]:
        context: dict[str, Any] = {}
        for data in self.data:  # early binding: every <data>, in document order
            context[data.get("id", "")] = self.attempt(None, self.datum, data, context)
        config = self.node(self.root, sanitize_id(self.root.get("name") or "(machine)"))
        if self.problems:
            raise DefinitionError("unsupported-scxml", "", "; ".join(self.problems))
        if context:
            config["context"] = context
        return config

    def datum(self, data: ET.Element, context: dict[str, Any]) -> Any:
        if data.get("src") is not None:
            raise _unsupported("data", "src (a value in another document) is not loaded")
        if (data.text or "").strip() or len(data):
            raise _unsupported("data", f"inline content {NEEDS_DATAMODEL}")
        expr = data.get("expr")
        return None if expr is None else _evaluate(self.parse(expr, "data"), context)

    def parse(self, source: str, where: str, allow_in: bool = False) -> Node:
        node = _Parser(source, self.names, where).parse()
        if not allow_in and _has_in(node):
            raise _unsupported(where, f"In() is only supported in conditions: {source!r}")
        return node

    def value(self, source: str, where: str) -> Fn:
        return _function(self.parse(source, where))

    def guard(self, source: str, where: str) -> Any:
        return self._guard(self.parse(source, where, allow_in=True))

    def _guard(self, node: Node) -> Any:
        """A callable guard, or XState's stateIn/and/or/not dicts around In() calls."""
        if not _has_in(node):
            return lambda context, event: _truthy(_evaluate(node, context))
        if node[0] == "in":
            return {"type": "xstate.stateIn", "stateValue": f"#{node[1]}"}
        if node[0] == "not":
            return {"type": "xstate.not", "guard": self._guard(node[1])}
        if node[0] == "bin" and node[1] in ("&&", "||"):
            kind = "xstate.and" if node[1] == "&&" else "xstate.or"
            return {"type": kind, "guards": [self._guard(node[2]), self._guard(node[3])]}
        raise _unsupported("transition", "In() used as a value")

    def state_id(self, el: ET.Element) -> str:
        if el.get("id") is None:
            self.anonymous += 1
            el.set("id", f"${_local(el)}{self.anonymous}")
        return sanitize_id(el.get("id", ""))

    # -- states ---------------------------------------------------------------------------

    def node(self, el: ET.Element, state_id: str) -> dict[str, Any]:
        tag = _local(el)
        config: dict[str, Any] = {"id": state_id}
        if tag == "history":
            return self.history(el, config)
        for name in (_local(child) for child in el if _local(child) not in _STATE_CHILDREN):
            datamodel = name in ("script", "donedata")
            why = NEEDS_DATAMODEL if datamodel else f"not supported in <{tag}>"
            self.problems[f"<{name}>: {why}"] = None
        if tag in ("final", "parallel"):
            config["type"] = tag
        children = _kids(el, *STATE_TAGS)
        if children:
            config["states"] = {self.state_id(c): c for c in children}
            config["states"] = {k: self.node(c, k) for k, c in config["states"].items()}
            if tag in ("state", "scxml"):
                initial = self.attempt(None, self.initial, el, children, state_id)
                if initial is not None:
                    config["initial"] = initial
        for name, key in (("onentry", "entry"), ("onexit", "exit")):
            if actions := [a for block in _kids(el, name) for a in self.actions(block)]:
                config[key] = actions
        self.transitions(el, config, compound=tag == "state" and bool(children))
        invokes = [self.attempt(None, self.invoke, inv) for inv in _kids(el, "invoke")]
        if invokes := [inv for inv in invokes if inv is not None]:
            config["invoke"] = invokes
        return config

    def initial(self, el: ET.Element, children: list[ET.Element], state_id: str) -> Any:
        elements = _kids(el, "initial")
        transition = next(iter(_kids(elements[0], "transition")), None) if elements else None
        target = transition.get("target") if transition is not None else el.get("initial")
        if target is None:
            return next((self.state_id(c) for c in children if _local(c) != "history"), None)
        keys = [self.state_id(c) for c in children]
        if len(target.split()) != 1 or sanitize_id(target.strip()) not in keys:
            why = "XState v5 allows only one direct child as the initial state"
            raise _unsupported("initial", f"{target!r} is not a child of #{state_id} ({why})")
        actions = self.actions(transition) if transition is not None else []
        key = sanitize_id(target.strip())
        return {"target": key, "actions": actions} if actions else key

    def history(self, el: ET.Element, config: dict[str, Any]) -> dict[str, Any]:
        config.update(type="history", history=el.get("type", "shallow"))
        for transition in _kids(el, "transition"):
            if len(transition):
                why = "XState v5 history states have no transition actions"
                self.problems[f"<history>: executable content in a default transition ({why})"] = (
                    None
                )
            if targets := [f"#{sanitize_id(t)}" for t in (transition.get("target") or "").split()]:
                config["target"] = targets[0] if len(targets) == 1 else targets
        return config

    def transitions(self, el: ET.Element, config: dict[str, Any], compound: bool) -> None:
        on: dict[str, list[dict[str, Any]]] = {}
        always: list[dict[str, Any]] = []
        for t in _kids(el, "transition"):
            transition: dict[str, Any] = {}
            if targets := [sanitize_id(x) for x in (t.get("target") or "").split()]:
                many = [f"#{x}" for x in targets]
                transition["target"] = many[0] if len(many) == 1 else many
                # SCXML type="internal" keeps the source only if it is a compound state
                # and every target is a proper descendant; otherwise it acts as external.
                below = {sanitize_id(d.get("id", "")) for d in el.iter() if d is not el}
                if not (t.get("type") == "internal" and compound and below.issuperset(targets)):
                    transition["reenter"] = True
            if t.get("cond") is not None:
                transition["guard"] = self.attempt(
                    None, self.guard, t.get("cond", ""), "transition"
                )
            if actions := self.actions(t):
                transition["actions"] = actions
            events = (t.get("event") or "").split()
            if not events:
                always.append(transition)
            for key in dict.fromkeys(k for e in events for k in self.descriptors(e)):
                on.setdefault(key, []).append(transition)
        if on:
            config["on"] = on
        if always:
            config["always"] = always

    def descriptors(self, event: str) -> list[str]:
        """An SCXML event descriptor as XState keys: ``foo`` matches ``foo.bar`` (``foo.*``)."""
        base = event.removesuffix(".*")
        if base == "*":
            return ["*"]
        if base == "done":
            return ["xstate.done.state.*", "xstate.done.actor.*"]
        for prefix, ours in _DONE.items():
            if base == prefix or base.startswith(prefix + "."):
                rest = sanitize_id(base[len(prefix) + 1 :])
                base = f"{ours}.{rest}" if rest else ours
        return [f"{base}.*"]

    def invoke(self, el: ET.Element) -> dict[str, Any]:
        problems: list[str] = []
        if names := [a for a in _INVOKE_EXPRS if el.get(a)]:
            problems.append(f"{'/'.join(names)} {NEEDS_DATAMODEL}")
        if el.get("src"):
            problems.append("src (another document) is not loaded")
        if el.get("type") not in _SCXML_TYPES:
            problems.append(f"type {el.get('type')!r} is not SCXML")
        if el.get("autoforward") == "true":
            problems.append("autoforward (XState v5 has none)")
        if _kids(el, "param"):
            problems.append(f"<param> {NEEDS_DATAMODEL}")
        if _kids(el, "finalize"):
            problems.append("<finalize> (XState v5 has none)")
        contents = _kids(el, "content")
        documents = _kids(contents[0], "scxml") if contents else []
        if contents and len(documents) != 1:
            problems.append(f"<content> other than one inline <scxml> {NEEDS_DATAMODEL}")
        elif not contents and not el.get("src") and not names:
            problems.append("no <content>")
        from . import create_machine

        child = None
        try:
            if len(documents) == 1:
                child = create_machine(_Converter(documents[0]).machine())
        except DefinitionError as exc:
            problems.append(f"in the invoked document: {exc.message}")
        if problems or child is None:
            raise _unsupported("invoke", ", ".join(problems))
        invoke: dict[str, Any] = {"src": child}
        if el.get("id"):
            invoke["id"] = el.get("id")
        return invoke

    # -- executable content ---------------------------------------------------------------

    def actions(self, block: ET.Element) -> list[Any]:
        return [action for el in block for action in self.action(el)]

    def action(self, el: ET.Element) -> list[Any]:
        return self.attempt([], self._action, el)

    def _action(self, el: ET.Element) -> list[Any]:
        tag = _local(el)
        if tag == "raise":
            if not el.get("event"):
                raise _unsupported(tag, "no event")
            return [{"type": "xstate.raise", "event": {"type": el.get("event")}}]
        if tag == "send":
            return [self.send(el)]
        if tag == "cancel":
            return [self.cancel(el)]
        if tag == "log":
            return [self.log(el)]
        if tag == "assign":
            return [self.assign(el)]
        if tag == "script":
            if el.get("src") is not None:
                raise _unsupported(tag, f"a script in another document {NEEDS_DATAMODEL}")
            return self.script(el)
        if tag == "if":
            return [self.if_(el)]
        raise _unsupported(tag, f"executable content {NEEDS_DATAMODEL}")

    def assign(self, el: ET.Element) -> dict[str, Any]:
        location = el.get("location") or ""
        base = re.split(r"[.\[]", location.strip(), maxsplit=1)[0]
        if el.get("expr") is None:
            raise _unsupported("assign", f"a value other than expr {NEEDS_DATAMODEL}")
        if location in self.names:
            assignment = {location: self.value(el.get("expr", ""), "assign")}
            return {"type": "xstate.assign", "assignment": assignment}
        if base in self.names:
            raise _unsupported("assign", f"location {location!r} {NEEDS_DATAMODEL}")
        if base in _SYSTEM_VARIABLES:
            why = f"{location!r} is a system variable"
        else:
            why = f"{location!r} is not declared by a <data>"
        raise _unsupported("assign", f"{why} ({_ERROR_EXECUTION})")

    def cancel(self, el: ET.Element) -> dict[str, Any]:
        if (send_id := el.get("sendid")) is not None:
            return {"type": "xstate.cancel", "sendId": send_id}
        if (expr := el.get("sendidexpr")) is not None:
            return {"type": "xstate.cancel", "sendId": self.value(expr, "cancel")}
        raise _unsupported("cancel", "no sendid")

    def send(self, el: ET.Element) -> dict[str, Any]:
        problems: list[str] = []
        if names := [a for a in _SEND_EXPRS if el.get(a) is not None]:
            problems.append(f"{'/'.join(names)} {NEEDS_DATAMODEL}")
        if len(el):
            data = "/".join(dict.fromkeys(f"<{_local(c)}>" for c in el))
            problems.append(f"{data} (event data) {NEEDS_DATAMODEL}")
        kind = el.get("type")
        if kind == _BASIC_HTTP:
            problems.append("the Basic HTTP Event I/O Processor is not supported")
        elif kind not in _SEND_TYPES and "typeexpr" not in names:
            problems.append(f"type {kind!r} is not an event processor ({_ERROR_EXECUTION})")
        target = el.get("target")
        action: dict[str, Any] = {"type": "xstate.sendTo"}
        if target == "#_internal":
            action["type"] = "xstate.raise"
        elif target is None or target == "#_parent":
            action["to"] = target or "#_self"
        elif target.startswith("#_scxml_"):
            why = "sessions are not addressed by id"
            problems.append(f"target {target!r}: {why} (SCXML raises error.communication)")
        elif target.startswith("#_"):
            action["to"] = target[2:]
        else:
            why = "is not #_internal, #_parent or #_<invokeid>"
            problems.append(f"target {target!r} {why} ({_ERROR_EXECUTION})")
        if el.get("event"):
            action["event"] = {"type": el.get("event")}
        elif (expr := el.get("eventexpr")) is not None:
            action["event"] = _event_name(self.parse(expr, "send"))
        else:
            problems.append("no event")
        if problems:
            raise _unsupported("send", ", ".join(problems))
        if el.get("delay") is not None:
            action["delay"] = _delay_ms(el.get("delay", ""))
        elif (expr := el.get("delayexpr")) is not None:
            node = self.parse(expr, "send")
            if node[0] == "lit":  # a constant is read (and checked) when loading
                action["delay"] = _delay_ms(_js_str(node[1]))
            else:
                action["delay"] = lambda context, event: _delay_ms(
                    _js_str(_evaluate(node, context))
                )
        if el.get("id") is not None:
            action["id"] = el.get("id")
        return action

    def log(self, el: ET.Element) -> dict[str, Any]:
        action: dict[str, Any] = {"type": "xstate.log"}
        if (expr := el.get("expr")) is not None:
            try:
                action["value"] = self.value(expr, "log")
            except DefinitionError:
                action["value"] = expr  # beyond the subset: log the expression's text
        if el.get("label") is not None:
            action["label"] = el.get("label")
        return action

    def script(self, el: ET.Element) -> list[Any]:
        """Statements ``x = e``, ``x op= e``, ``x++``, ``x--`` on ``<data>`` ids."""
        out: list[Any] = []
        for statement in filter(None, (s.strip() for s in re.split(r"[;\n]", el.text or ""))):
            match = _STATEMENT.fullmatch(statement)
            if len(el) or not match or match[1] not in self.names:
                raise _unsupported("script", f"{NEEDS_DATAMODEL} for {statement!r}")
            name, op, source, step = match.groups()
            node = self.parse(source or "1", "script")
            if op or step:
                node = ("bin", op or step[0], ("var", name), node)
            out.append({"type": "xstate.assign", "assignment": {name: _function(node)}})
        return out

    def if_(self, el: ET.Element) -> dict[str, Any]:
        branches: list[tuple[Any, list[Any]]] = [(self.guard(el.get("cond", ""), "if"), [])]
        for child in el:
            if _local(child) == "elseif":
                branches.append((self.guard(child.get("cond", ""), "elseif"), []))
            elif _local(child) == "else":
                branches.append((None, []))
            else:
                branches[-1][1].extend(self.action(child))

        def collect(context: Any, event: Any, enqueue: Any) -> None:
            for guard, actions in branches:
                if guard is None or enqueue.check(guard):
                    for action in actions:
                        enqueue(action)
                    return

        return {"type": "xstate.enqueueActions", "collect": collect}


def _function(node: Node) -> Fn:
    return lambda context, event: _evaluate(node, context)


def _event_name(node: Node) -> Fn:
    return lambda context, event: _js_str(_evaluate(node, context))
