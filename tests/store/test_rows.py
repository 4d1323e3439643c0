"""The rows both SQL stores write (store/_rows): the tables written by position have
their columns in the order the row builders use, in SQLite's schema and in
PostgreSQL's; each builder's tuple has a value per column; JSON values reach the
stores as plain text."""

from __future__ import annotations

from pathlib import Path

import pytest

from backstate.store import (
    DeadLetterRow,
    EffectRow,
    HistoryRow,
    IdempotencyRow,
    InboxRow,
    InstanceRow,
    LogRow,
    TimerRow,
)
from backstate.store._records import RawJson
from backstate.store._rows import (
    COLUMNS,
    INSTANCE_TABLES,
    dead_letter,
    effect,
    history,
    idempotency,
    idempotency_answer,
    inbox,
    instance,
    instance_update,
    json_text,
    log,
    timer,
)

from .targets import KINDS, Target, new_target


@pytest.fixture(params=KINDS)
def schema(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    target = new_target(request, tmp_path)
    target.open().close()  # the schema, made
    return target


def _columns(target: Target, table: str) -> tuple[str, ...]:
    """The table's columns in order, but for those the database fills in itself
    (PostgreSQL's identity columns, such as the effects' ``position``)."""
    if target.kind == "postgresql":
        rows = target.rows(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?"
            " AND table_schema = current_schema() AND is_identity = 'NO'"
            " ORDER BY ordinal_position",
            table,
        )
        return tuple(r[0] for r in rows)
    return tuple(r[1] for r in target.rows(f"PRAGMA table_info({table})"))


@pytest.mark.parametrize("table", sorted(COLUMNS))
def test_positional_tables_have_the_builders_column_order(schema: Target, table: str) -> None:
    assert _columns(schema, table) == COLUMNS[table]


def test_an_instance_lives_only_in_the_tables_deleting_it_clears(schema: Target) -> None:
    for table, column in INSTANCE_TABLES:
        assert column in _columns(schema, table), table


ROW = InstanceRow(
    "m", "i", "v1", 3, {"value": "a"}, "running", ("p", "q"), 1, 2, {"c": ("m", "c1")}, "v2"
)


def test_each_builder_gives_a_value_per_column() -> None:
    built = {
        "instances": instance(ROW),
        "history": history(("m", "i"), HistoryRow(3, {"type": "e"}, {"value": "a"}, 9)),
        "timers": timer(TimerRow("m", "i", "k", {"type": "t"}, 50, "self", 0)),
        "effects": effect(EffectRow("e1", "m", "i", "action", "a", None, {"attempts": 2})),
        "idempotency_keys": idempotency(IdempotencyRow("m", "i", "k", "f", "v1", 3, 7)),
    }
    for table, row in built.items():
        assert len(row) == len(COLUMNS[table]), table
    assert dict(zip(COLUMNS["instances"], built["instances"], strict=True)) == {
        "machine": "m",
        "name": "i",
        "version": "v1",
        "seq": 3,
        "snapshot": '{"value":"a"}',
        "status": "running",
        "parent": "p/q",
        "children": '{"c":"m/c1"}',
        "created_at": 1,
        "updated_at": 2,
        "desired_version": "v2",
    }
    assert dict(zip(COLUMNS["timers"], built["timers"], strict=True))["target"] == "self"
    assert built["effects"][-1] == '{"attempts":2}'


def test_an_update_sets_what_a_create_writes_but_the_key_parent_and_creation() -> None:
    created = dict(zip(COLUMNS["instances"], instance(ROW), strict=True))
    for name in ("machine", "name", "parent", "created_at"):
        del created[name]
    assert instance_update(ROW) == tuple(created.values())


def test_the_other_rows() -> None:
    assert inbox(InboxRow(0, "m", "i", {"type": "e"}, "s", 1, 0, 5)) == (
        "m",
        "i",
        '{"type":"e"}',
        "s",
        1,
        0,
        5,
    )
    letter = DeadLetterRow(0, "m", "i", {"type": "e"}, "s", "bad\x00", 3, 9)
    assert dead_letter(letter)[4] == "bad\x00"
    assert dead_letter(letter, lambda t: t.replace("\x00", "?"))[4] == "bad?"
    line = LogRow(1, "m", "v", "i", "info", "hi\x00")
    assert log(line, str.upper) == (1, "m", "v", "i", "info", "HI\x00")
    assert idempotency_answer((("m", "i"), "k", "v2", 4)) == ("v2", 4, "m", "i", "k")


def test_json_text_is_plain_text() -> None:
    raw = RawJson('{"a": 1}')
    assert json_text(raw) == '{"a": 1}' and type(json_text(raw)) is str
    assert json_text({"é": [1, None]}) == '{"é":[1,null]}'
    assert type(json_text("x")) is str
