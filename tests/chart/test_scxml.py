"""Unit tests of the SCXML importer (backstate.chart.scxml) on small inline documents."""

from __future__ import annotations

from typing import Any

import pytest

from backstate.chart import DefinitionError
from backstate.chart.scxml import load_scxml, machine_from_scxml, sanitize_id
from backstate.testing import Actor

NS = 'xmlns="http://www.w3.org/2005/07/scxml" version="1.0"'


def doc(body: str, attrs: str = "") -> str:
    return f"<scxml {NS} {attrs}>{body}</scxml>"


def test_basic_document_becomes_xstate_config() -> None:
    config = load_scxml(
        doc(
            """
            <state id="a"><transition event="t" target="b"/></state>
            <final id="b"/>
            """
        )
    )
    assert config == {
        "id": "(machine)",
        "initial": "a",
        "states": {
            "a": {"id": "a", "on": {"t.*": [{"target": "#b", "reenter": True}]}},
            "b": {"id": "b", "type": "final"},
        },
    }


def test_initial_attribute_name_and_parallel() -> None:
    config = load_scxml(
        doc(
            """
            <state id="x"/>
            <parallel id="p"><state id="r1"/><state id="r2"/></parallel>
            """,
            'initial="p" name="m"',
        )
    )
    assert config["id"] == "m"
    assert config["initial"] == "p"
    assert config["states"]["p"] == {
        "id": "p",
        "type": "parallel",
        "states": {"r1": {"id": "r1"}, "r2": {"id": "r2"}},
    }


def test_event_descriptors() -> None:
    config = load_scxml(
        doc(
            """
            <state id="a">
              <transition event="x y.z  x" target="b"/>
              <transition event="*" target="b"/>
              <transition event="foo.*" target="b"/>
              <transition event="foo"/>
              <transition event="done.state.p.q done.invoke.i done.invoke" target="b"/>
              <transition target="b"/>
            </state>
            <state id="b"/>
            """
        )
    )
    on = config["states"]["a"]["on"]
    assert list(on) == [
        "x.*",
        "y.z.*",
        "*",
        "foo.*",
        "xstate.done.state.p$q.*",
        "xstate.done.actor.i.*",
        "xstate.done.actor.*",
    ]
    assert len(on["x.*"]) == 1
    assert on["foo.*"] == [{"target": "#b", "reenter": True}, {}]  # document order kept
    assert config["states"]["a"]["always"] == [{"target": "#b", "reenter": True}]


def test_internal_transitions_keep_the_source_only_when_scxml_would() -> None:
    config = load_scxml(
        doc(
            """
            <state id="s">
              <transition event="down" type="internal" target="s2"/>
              <transition event="out" type="internal" target="t"/>
              <transition event="ext" target="s2"/>
              <state id="s1"/><state id="s2"/>
            </state>
            <parallel id="t">
              <transition event="par" type="internal" target="t1"/>
              <state id="t1"/>
            </parallel>
            """
        )
    )
    s, t = config["states"]["s"]["on"], config["states"]["t"]["on"]
    assert s["down.*"] == [{"target": "#s2"}]
    assert s["out.*"] == [{"target": "#t", "reenter": True}]
    assert s["ext.*"] == [{"target": "#s2", "reenter": True}]
    assert t["par.*"] == [{"target": "#t1", "reenter": True}]  # parallel: acts external


def test_dotted_ids_are_sanitised_everywhere() -> None:
    config = load_scxml(
        doc(
            """
            <state id="a.b" initial="a.b.1">
              <state id="a.b.1"><transition event="t" target="a.b.2 c.1" cond="In('c.1')"/></state>
              <state id="a.b.2"/>
            </state>
            <state id="c.1"/>
            """
        )
    )
    ab = config["states"]["a$b"]
    assert ab["initial"] == "a$b$1"
    transition = ab["states"]["a$b$1"]["on"]["t.*"][0]
    assert transition["target"] == ["#a$b$2", "#c$1"]
    assert transition["guard"] == {"type": "xstate.stateIn", "stateValue": "#c$1"}
    assert sanitize_id("x.y.z") == "x$y$z"


def test_send_raise_cancel_log() -> None:
    config = load_scxml(
        doc(
            """
            <state id="a"><onentry>
              <raise event="r"/>
              <send event="e1"/>
              <send event="e2" delay="1s" id="t1"/>
              <send event="e3" delay="100ms" target="#_parent"/>
              <send event="e4" delay=".5s" target="#_child"/>
              <send event="e5" target="#_internal"/>
              <cancel sendid="t1"/>
              <log label="L" expr="'hi'"/>
            </onentry></state>
            """
        )
    )
    entry = config["states"]["a"]["entry"]
    log = entry.pop()
    assert entry == [
        {"type": "xstate.raise", "event": {"type": "r"}},
        {"type": "xstate.sendTo", "event": {"type": "e1"}, "to": "#_self"},
        {
            "type": "xstate.sendTo",
            "event": {"type": "e2"},
            "to": "#_self",
            "delay": 1000,
            "id": "t1",
        },
        {"type": "xstate.sendTo", "event": {"type": "e3"}, "to": "#_parent", "delay": 100},
        {"type": "xstate.sendTo", "event": {"type": "e4"}, "to": "child", "delay": 500},
        {"type": "xstate.raise", "event": {"type": "e5"}},
        {"type": "xstate.cancel", "sendId": "t1"},
    ]
    assert log["type"] == "xstate.log" and log["label"] == "L"
    assert log["value"]({}, {}) == "hi"


def test_history_and_initial_element() -> None:
    config = load_scxml(
        doc(
            """
            <state id="s">
              <initial><transition target="h"><raise event="go"/></transition></initial>
              <history id="h" type="deep"><transition target="s2"/></history>
              <state id="s1"/><state id="s2"/>
            </state>
            """
        )
    )
    s = config["states"]["s"]
    assert s["initial"] == {
        "target": "h",
        "actions": [{"type": "xstate.raise", "event": {"type": "go"}}],
    }
    assert s["states"]["h"] == {"id": "h", "type": "history", "history": "deep", "target": "#s2"}


@pytest.mark.parametrize(
    ("body", "element"),
    [
        ('<state id="a"><onentry><script src="x.js"/></onentry></state>', "script"),
        ('<state id="a"><onentry><foreach array="a" item="i"/></onentry></state>', "foreach"),
        (
            '<state id="a"><onentry><send targetexpr="\'#_internal\'" event="e"/></onentry></state>',
            "send",
        ),
        ('<state id="a"><transition event="t" cond="_event.data.x"/></state>', "transition"),
        ('<state id="a"><onentry><assign location="nope" expr="1"/></onentry></state>', "assign"),
        ('<datamodel><data id="o" expr="{a: 1}"/></datamodel><state id="a"/>', "data"),
        ('<state id="u"><state id="a"/><state id="b"/></state>', "initial"),  # deep initial
        ('<state id="a"><invoke type="http://example.com/x"/></state>', "invoke"),
        ('<state id="a"><donedata/></state>', "donedata"),
        (
            '<datamodel><data id="v"/></datamodel><state id="a"><transition cond="++v"/></state>',
            "transition",
        ),
    ],
)
def test_unsupported_constructs_raise(body: str, element: str) -> None:
    attrs = 'initial="b"' if element == "initial" else ""
    with pytest.raises(DefinitionError) as info:
        load_scxml(doc(body, attrs))
    assert info.value.code == "unsupported-scxml"
    assert info.value.message.startswith(f"<{element}>")


def test_datamodel_if_else_and_script_run() -> None:
    machine = machine_from_scxml(
        doc(
            """
            <datamodel><data id="x" expr="1"/><data id="s" expr="'n:'"/></datamodel>
            <state id="a">
              <onentry>
                <if cond="x === 0"><assign location="x" expr="100"/>
                <elseif cond="x === 1"/><assign location="x" expr="x * 10"/>
                <else/><assign location="x" expr="-1"/></if>
                <script>x += 5; x++; s = s + x</script>
              </onentry>
              <transition event="u">
                <if cond="In('b') || x !== 16"><assign location="x" expr="0"/>
                <elseif cond="In('a')"/><assign location="x" expr="x + 1"/></if>
              </transition>
              <transition event="t" cond="x === 17 &amp;&amp; !(s !== 'n:16')" target="b"/>
            </state>
            <state id="b"/>
            """
        )
    )
    actor = Actor(machine)
    assert actor.snapshot.context == {"x": 16, "s": "n:16"}
    actor.send({"type": "u"})
    assert actor.snapshot.context == {"x": 17, "s": "n:16"}
    actor.send({"type": "t"})
    assert actor.snapshot.atomic_ids == ["b"]


def test_expression_subset_follows_javascript() -> None:
    def value(expr: str, **data: Any) -> Any:
        decls = "".join(f'<data id="{k}" expr="{v}"/>' for k, v in data.items())
        entry = f'<onentry><log expr="{expr}"/></onentry>'
        config = load_scxml(doc(f'<datamodel>{decls}</datamodel><state id="a">{entry}</state>'))
        return config["states"]["a"]["entry"][0]["value"](config.get("context", {}), {})

    assert value("'a' + 1 + 2") == "a12"
    assert value("1 + 2 + 'a'") == "3a"
    assert value("7 / 2") == 3.5
    assert value("1 === true") is False
    assert value("x || 'default'", x="0") == "default"
    assert value("x &amp;&amp; 'y'", x="''") == ""
    assert value("Math.pow(2, 3) - 1") == 7
    assert value("-(1 + 2) * 3 &lt; -8") is True
    assert value("!x === false", x="1") is True  # ! binds tighter than ===
    assert value("'n' + undefined") == "nundefined"


def test_delayed_send_and_cancel() -> None:
    machine = machine_from_scxml(
        doc(
            """
            <state id="a">
              <onentry><send event="late" delay="1s" id="d"/><send event="soon" delay="10ms"/></onentry>
              <transition event="soon" target="b"/>
            </state>
            <state id="b">
              <onentry><cancel sendid="d"/></onentry>
              <transition event="late" target="c"/>
            </state>
            <state id="c"/>
            """
        )
    )
    actor = Actor(machine)
    actor.advance(10)
    assert actor.snapshot.atomic_ids == ["b"]
    actor.advance(2000)
    assert actor.snapshot.atomic_ids == ["b"]  # "late" was cancelled


def test_every_problem_of_a_document_is_reported() -> None:
    with pytest.raises(DefinitionError) as info:
        load_scxml(
            doc(
                """
                <datamodel><data id="x" src="file:x.json"/></datamodel>
                <state id="a">
                  <onentry><foreach array="x" item="i"/><assign location="y" expr="1"/></onentry>
                  <transition event="t" cond="_event.name" target="b"/>
                  <invoke type="scxml" autoforward="true"><content><scxml {NS}>
                    <state id="k"><onentry><send event="e" target="baz"/></onentry></state>
                  </scxml></content></invoke>
                </state>
                <state id="b" initial="b2">
                  <history id="h"><transition target="b1"><raise event="r"/></transition></history>
                  <state id="b1"><state id="b2"/></state>
                </state>
                """.replace("{NS}", NS)
            )
        )
    assert info.value.code == "unsupported-scxml"
    assert info.value.message.split("; ") == [
        "<data>: src (a value in another document) is not loaded",
        "<foreach>: executable content needs an ECMAScript datamodel",
        "<assign>: 'y' is not declared by a <data> (SCXML raises error.execution)",
        "<transition>: needs an ECMAScript datamodel for '_event.name'",
        "<invoke>: autoforward (XState v5 has none), in the invoked document: <send>: target "
        "'baz' is not #_internal, #_parent or #_<invokeid> (SCXML raises error.execution)",
        "<history>: executable content in a default transition (XState v5 history states "
        "have no transition actions)",
        "<initial>: 'b2' is not a child of #b (XState v5 allows only one direct child as the "
        "initial state)",
    ]


def test_a_state_with_only_history_children_has_no_initial() -> None:
    # The importer leaves 'initial' out (it used to crash); the engine names the problem.
    assert (
        "initial" not in load_scxml(doc('<state id="s"><history id="h"/></state>'))["states"]["s"]
    )
    with pytest.raises(DefinitionError) as info:
        machine_from_scxml(doc('<state id="s"><history id="h"/></state>'))
    assert info.value.code == "missing-initial"


def test_eventexpr_and_sendidexpr_are_read_when_they_run() -> None:
    machine = machine_from_scxml(
        doc(
            """
            <datamodel><data id="name" expr="'wrong'"/><data id="which" expr="'none'"/></datamodel>
            <state id="a">
              <onentry>
                <send id="first" event="late" delay="1s"/>
                <assign location="name" expr="'go'"/>
                <assign location="which" expr="'first'"/>
                <send eventexpr="name"/>
                <cancel sendidexpr="which"/>
              </onentry>
              <transition event="go" target="b"/>
            </state>
            <state id="b"><transition event="late" target="c"/></state>
            <state id="c"/>
            """
        )
    )
    actor = Actor(machine)
    assert actor.snapshot.atomic_ids == ["b"]
    actor.advance(2000)
    assert actor.snapshot.atomic_ids == ["b"]  # "late" was cancelled through sendidexpr


def test_delayexpr_is_read_when_the_send_runs() -> None:
    machine = machine_from_scxml(
        doc(
            """
            <datamodel><data id="wait" expr="'1s'"/></datamodel>
            <state id="a">
              <onentry>
                <assign location="wait" expr="'2s'"/>
                <send event="late" delayexpr="wait"/>
                <send event="soon" delayexpr="'.5s'"/>
              </onentry>
              <transition event="soon" target="b"/>
            </state>
            <state id="b"><transition event="late" target="c"/></state>
            <state id="c"/>
            """
        )
    )
    actor = Actor(machine)
    actor.advance(500)
    assert actor.snapshot.atomic_ids == ["b"]
    actor.advance(1499)
    assert actor.snapshot.atomic_ids == ["b"]
    actor.advance(1)
    assert actor.snapshot.atomic_ids == ["c"]


def test_invoked_child_document() -> None:
    machine = machine_from_scxml(
        doc(
            f"""
            <state id="a">
              <invoke id="kid" type="scxml"><content>
                <scxml {NS}>
                  <state id="k1">
                    <onentry><send event="hello" target="#_parent"/></onentry>
                    <transition event="bye" target="k2"/>
                  </state>
                  <final id="k2"/>
                </scxml>
              </content></invoke>
              <transition event="hello" target="b"/>
            </state>
            <state id="b">
              <invoke id="kid2"><content>
                <scxml {NS}><final id="only"/></scxml>
              </content></invoke>
              <transition event="done.invoke.kid2" target="c"/>
            </state>
            <state id="c"/>
            """
        )
    )
    actor = Actor(machine)
    assert actor.snapshot.atomic_ids == ["c"]
