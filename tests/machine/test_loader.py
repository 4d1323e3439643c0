"""Loading machine files: what a valid one gives, and clear errors for broken ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from backstate.machine import MachineModuleError, load_file, load_source

GOOD = """
from backstate.chart import setup

machine = setup().create_machine({"initial": "off", "states": {"off": {"on": {"toggle": "on"}}, "on": {}}})


def allow_read(*, machine_instance_name, auth_context, **_):
    return auth_context.get("sub") == machine_instance_name


def allow_write(*, machine_instance_name, auth_context, **_):
    return auth_context.get("sub") == machine_instance_name
"""


def test_loads_a_machine_file(tmp_path: Path) -> None:
    path = tmp_path / "toggler.py"
    path.write_text(GOOD)
    loaded = load_file(path)
    snapshot, _ = loaded.machine.initial_transition()
    assert snapshot.value == "off"
    assert loaded.allow_read(
        machine_instance_name="u1", auth_context={"sub": "u1"}, state=None, context={}
    )
    assert not loaded.allow_write(machine_instance_name="u1", auth_context={"sub": "u2"})
    assert loaded.http_api == {}


@pytest.mark.parametrize(
    ("source", "code", "line"),
    [
        ("machine = (\n", "syntax-error", 1),
        ("import not_a_module_anywhere\n", "import-error", 1),
        ("x = 1\n\n1 / 0\n", "import-error", 3),
        ("allow_read = allow_write = lambda **kw: True\n", "missing-export", None),
        ("machine = 3\nallow_read = allow_write = lambda **kw: True\n", "invalid-export", None),
        (
            "from backstate.chart import create_machine\n"
            "machine = create_machine({'initial': 'x', 'states': {'a': {}}})\n",
            "invalid-machine",
            2,
        ),
        (GOOD.replace("def allow_write", "def not_allow_write"), "missing-export", None),
    ],
)
def test_errors_name_the_file_and_line(source: str, code: str, line: int | None) -> None:
    with pytest.raises(MachineModuleError) as info:
        load_source(source, "m.py")
    assert (info.value.code, info.value.filename, info.value.line) == (code, "m.py", line)
    assert str(info.value).startswith("m.py")
