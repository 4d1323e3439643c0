"""Machine and migration files, checked before anything is uploaded: the file imports
and defines what it must, or the problem is reported as ``file:line: message (code)``."""

from __future__ import annotations

from pathlib import Path

from backstate.machine import MachineModule, load_file, load_migration_source

from ._args import CliError


def read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{path}: no such file", "file-not-found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: cannot read it ({exc})", "file-unreadable") from None


def machine_file(path: str | Path) -> tuple[str, MachineModule]:
    """The source of a machine file that defines ``machine``, ``allow_read`` and
    ``allow_write``, and the module it makes (``MachineModuleError`` otherwise)."""
    source = read(path)
    return source, load_file(path)


def migration_file(path: str | Path) -> str:
    """The source of a migration file that defines ``upgrade_state`` and
    ``upgrade_context``."""
    source = read(path)
    load_migration_source(source, str(path))
    return source


def machine_slug(path: str | Path) -> str:
    """The machine a file deploys as: its stem, underscores becoming dashes (as
    ``backstate serve --deploy`` names it)."""
    return Path(path).stem.replace("_", "-")
