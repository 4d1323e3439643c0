"""A machine file that fails to import: line 6 raises."""

from backstate.chart import setup

machine = setup().create_machine({"id": "broken", "initial": "a", "states": {"a": {}}})
allow_read = int("not a number")
