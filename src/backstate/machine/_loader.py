"""Loading machine modules from source, with errors that name the file and line."""

from __future__ import annotations

import re
import sys
import traceback
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backstate.chart import ChartError, Machine
from backstate.chart._describe import skeleton
from backstate.chart._outline import outline

Authorizer = Callable[..., bool]
_SLUG = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


class MachineModuleError(Exception):
    """A machine file cannot be used. Codes: syntax-error, import-error, missing-export,
    invalid-export, invalid-machine."""

    def __init__(self, code: str, message: str, filename: str, line: int | None = None) -> None:
        where = f"{filename}:{line}" if line else filename
        super().__init__(f"{where}: {message} ({code})")
        self.code = code
        self.message = message
        self.filename = filename
        self.line = line


@dataclass(frozen=True)
class MachineModule:
    machine: Machine
    allow_read: Authorizer
    allow_write: Authorizer
    http_api: dict[str, Any]
    module: types.ModuleType
    index_selectors: dict[str, str] | None = None  # index name -> selector, if defined
    step_timeout: float | None = None  # seconds, if the file sets its own


@dataclass(frozen=True)
class MigrationModule:
    """A migration file: ``upgrade_state(old_state_path, context) -> new_state_path``
    and ``upgrade_context(old_state_paths, new_state_paths, context) -> context``."""

    upgrade_state: Callable[[list[str], Any], list[str]]
    upgrade_context: Callable[[list[list[str]], list[list[str]], Any], Any]
    module: types.ModuleType


def load_file(path: str | Path) -> MachineModule:
    path = Path(path)
    return load_source(path.read_text(encoding="utf-8"), str(path))


def load_source(source: str, filename: str = "<machine>") -> MachineModule:
    """Execute ``source`` as a fresh module (trusted mode: in this process)."""
    module = _execute(source, filename)
    exports = module.__dict__
    machine = exports.get("machine")
    if machine is None:
        raise MachineModuleError("missing-export", "the file must define `machine`", filename)
    if not isinstance(machine, Machine):
        raise MachineModuleError(
            "invalid-export",
            f"`machine` must be a backstate.chart.Machine, not {type(machine).__name__}",
            filename,
        )
    allow_read, allow_write = _functions(exports, ("allow_read", "allow_write"), filename)
    http_api = _http_api(exports.get("http_api") or {}, filename)
    selectors = exports.get("index_selectors")
    if selectors is not None and not (
        isinstance(selectors, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in selectors.items())
    ):
        raise MachineModuleError(
            "invalid-export", "`index_selectors` must be a dict of index name -> selector", filename
        )
    step_timeout = exports.get("step_timeout")
    if step_timeout is not None and (
        isinstance(step_timeout, bool)
        or not isinstance(step_timeout, int | float)
        or not 0 < step_timeout <= 86400
    ):
        raise MachineModuleError(
            "invalid-export",
            f"`step_timeout` must be seconds, more than 0 and at most 86400, not {step_timeout!r}",
            filename,
        )
    timeout = None if step_timeout is None else float(step_timeout)
    return MachineModule(machine, allow_read, allow_write, http_api, module, selectors, timeout)


def definition(module: MachineModule) -> dict[str, Any]:
    """What a machine file defines, as plain JSON: its state tree without behaviour
    (``backstate.chart`` skeleton), what a diagram draws of it (its outline), its
    HTTP-API slugs, index selectors and step timeout."""
    return {
        "skeleton": skeleton(module.machine),
        "outline": outline(module.machine),
        "httpApi": sorted(module.http_api),
        "indexSelectors": module.index_selectors,
        "stepTimeout": module.step_timeout,
    }


def _http_api(http_api: Any, filename: str) -> dict[str, Any]:
    """``{slug: {"handler": fn, "response_mapper": fn}}``, checked when the file loads so
    a broken entry is refused at upload rather than failing its requests."""
    if not isinstance(http_api, dict):
        raise MachineModuleError(
            "invalid-export", "`http_api` must be a dict of slug -> mapper", filename
        )
    for slug, entry in http_api.items():
        if not isinstance(slug, str) or not _SLUG.match(slug):
            raise MachineModuleError(
                "invalid-export", f"http_api slug {slug!r} must match {_SLUG.pattern}", filename
            )
        for key in ("handler", "response_mapper"):
            if not isinstance(entry, dict) or not callable(entry.get(key)):
                raise MachineModuleError(
                    "invalid-export",
                    f"http_api[{slug!r}] needs a function {key!r} "
                    "(keys: 'handler', 'response_mapper')",
                    filename,
                )
    return http_api


def load_migration_source(source: str, filename: str = "<migration>") -> MigrationModule:
    """Execute a migration file's ``source`` (trusted mode: in this process)."""
    module = _execute(source, filename)
    upgrade_state, upgrade_context = _functions(
        module.__dict__, ("upgrade_state", "upgrade_context"), filename
    )
    return MigrationModule(upgrade_state, upgrade_context, module)


def _functions(exports: dict[str, Any], names: tuple[str, str], filename: str) -> list[Any]:
    found = []
    for export in names:
        fn = exports.get(export)
        if fn is None:
            raise MachineModuleError("missing-export", f"the file must define `{export}`", filename)
        if not callable(fn):
            raise MachineModuleError("invalid-export", f"`{export}` must be a function", filename)
        found.append(fn)
    return found


def _execute(source: str, filename: str) -> types.ModuleType:
    try:
        code = compile(source, filename, "exec")
    except SyntaxError as exc:
        raise MachineModuleError(
            "syntax-error", exc.msg or "invalid syntax", filename, exc.lineno
        ) from exc
    name = f"backstate_machine_{uuid.uuid4().hex}"
    module = types.ModuleType(name)
    module.__file__ = filename
    sys.modules[name] = module  # dataclasses and typing need the module to be findable
    try:
        exec(code, module.__dict__)
    except ChartError as exc:
        raise MachineModuleError(
            "invalid-machine", str(exc), filename, _line(exc, filename)
        ) from exc
    except Exception as exc:
        raise MachineModuleError(
            "import-error", f"{type(exc).__name__}: {exc}", filename, _line(exc, filename)
        ) from exc
    finally:
        sys.modules.pop(name, None)
    return module


def _line(exc: BaseException, filename: str) -> int | None:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == filename:
            return frame.lineno
    return None
