"""backstate.machine: a machine version as a Python module.

A machine file defines ``machine`` (a ``backstate.chart.Machine``), ``allow_read`` and
``allow_write`` (authorizers called with keyword arguments ``machine_instance_name,
auth_context, context, state`` and, for writes, ``event, write_type``), and optionally
``http_api`` (see docs). ``load_source`` imports such a file from its text, so the
server can run uploaded versions and the CLI can validate a file before uploading.
"""

from ._loader import (
    MachineModule,
    MachineModuleError,
    MigrationModule,
    definition,
    load_file,
    load_migration_source,
    load_source,
)

__all__ = [
    "MachineModule",
    "MachineModuleError",
    "MigrationModule",
    "definition",
    "load_file",
    "load_migration_source",
    "load_source",
]
