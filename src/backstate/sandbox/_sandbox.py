"""``Sandbox``: the runtime's ``UserCode`` run in sandboxed workers, one set per org.

The runtime's calls become calls to the org's workers (an org is a machine's
namespace: the server runs org ``o``'s machine ``m`` as ``o.m``). Versions and
migrations are registered with their source and loaded by each worker on first use;
``probe`` loads a new one in a fresh worker that is thrown away afterwards, so a file
whose import kills, hangs or poisons its process is refused before it is deployed and
never runs in the server.

Everything a worker answers is checked before the runtime sees it: snapshots must be
states of the version's shape (its skeleton, see ``backstate.chart``), effects must be
effects, logs lines; anything else is the call's ``invalid-user-code-output``. A call
whose worker hung or died is that call's ``user-code-timeout`` or
``user-code-crashed``; calls that were only waiting behind it are retried on a fresh
worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from backstate.chart import (
    DefinitionError,
    ExecutionError,
    Machine,
    RunAction,
    Snapshot,
    StartActor,
)
from backstate.chart._describe import shape
from backstate.chart._outline import check_outline
from backstate.chart._unhandled import checked as checked_unhandled
from backstate.runtime import (
    Backstate,
    BackstateError,
    EventRejected,
    Forbidden,
    InvalidRequest,
    MigrationFailed,
    UpgradeReport,
    UserCodeFailed,
    UserCodeTimeout,
    UserRaised,
)
from backstate.runtime._code import LogSink, Step, TransitionCall, Upgraded, WriteCheck
from backstate.runtime._deployments import Version, namespace_of
from backstate.runtime._migrations import Migration
from backstate.runtime._secrets import current_secrets
from backstate.runtime._steps import MAX_CONTEXT_BYTES
from backstate.runtime._upgrade_timers import checked_timers
from backstate.store import LogRow

from ._effects import BadOutput, Remote, decode_effects
from ._egress import Egress, Rule
from ._jail import EFFECTS, TRANSITIONS, Limits, check
from ._pool import OrgWorkers, Worker, WorkerDied

logger = logging.getLogger("backstate.sandbox")

LEVELS = {"debug", "info", "warning", "error"}
ACTION_TIMEOUT = 90.0  # seconds a custom action may run
# A snapshot text sent by a worker is stored as it is only within the runtime's limits:
# the nesting its encoder allows (orjson's) and the keys of Snapshot.to_json.
MAX_NESTING = 254
SNAPSHOT_KEYS = frozenset(
    {"value", "context", "status", "output", "error", "historyValue", "children"}
)


@dataclass(frozen=True)
class Loaded:
    """What a probe learnt of a version: its shape, HTTP-API slugs, index selectors, and
    its outline (for diagrams; None from a backstate that did not describe it)."""

    skeleton: dict[str, Any]
    http_api: list[str]
    index_selectors: dict[str, str] | None
    outline: dict[str, Any] | None = None
    step_timeout: float | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "skeleton": self.skeleton,
            "httpApi": self.http_api,
            "indexSelectors": self.index_selectors,
            "stepTimeout": self.step_timeout,
        }
        return data if self.outline is None else {**data, "outline": self.outline}

    @classmethod
    def from_json(cls, data: Any) -> Loaded:
        if not isinstance(data, dict) or not isinstance(data.get("skeleton"), dict):
            raise BadOutput("a description needs a skeleton")
        slugs = data.get("httpApi") or []
        selectors = data.get("indexSelectors")
        if not isinstance(slugs, list) or not all(isinstance(s, str) for s in slugs):
            raise BadOutput("httpApi must be a list of slugs")
        if selectors is not None and not (
            isinstance(selectors, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in selectors.items())
        ):
            raise BadOutput("indexSelectors must map names to selectors")
        drawn = data.get("outline")
        if drawn is not None:
            try:
                check_outline(drawn)
            except DefinitionError as exc:
                raise BadOutput(exc.message) from None
        timeout = data.get("stepTimeout")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= 86400
        ):
            raise BadOutput("stepTimeout must be seconds, more than 0 and at most 86400")
        return cls(
            data["skeleton"],
            slugs,
            selectors,
            drawn,
            None if timeout is None else float(timeout),
        )

    def machine(self) -> Machine:
        return shape(self.skeleton)


class ProbeFailed(Exception):
    """A version's or migration's file cannot be deployed: ``code`` says why (its own
    load error's code, ``user-code-timeout``, ``user-code-crashed``)."""

    def __init__(self, code: str, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line


def remote_authorizer(**kwargs: Any) -> bool:
    """The stand-in for an authorizer that runs in a worker (never called here)."""
    raise AssertionError("authorizers of sandboxed versions run in their workers")


class Sandbox:
    """``UserCode`` in sandboxed workers, their scratch folders under ``root``."""

    synchronous = False

    def __init__(
        self, root: Path, limits: Limits | None = None, egress: list[Rule] | None = None
    ) -> None:
        """``egress``: what effects may reach, through the proxy (none by default)."""
        self.root = root
        self.limits = limits or Limits()
        self.egress = Egress(egress or [])
        # The egress proxies' sockets: a short path (a socket's path is at most 107
        # bytes), one socket per org.
        self._sockets = Path(tempfile.mkdtemp(prefix="backstate-egress-"))
        self.orgs: dict[str, OrgWorkers] = {}
        self._sources: dict[str, dict[str, Any]] = {}  # version or migration id -> load call
        self._log: LogSink = lambda row: None
        self._now_ms: Callable[[], int] = lambda: 0

    def check(self) -> int:
        """Raise ``SandboxUnavailable`` unless workers can run on this host; the
        Landlock ABI they get (0: the kernel has none, the other layers stand)."""
        return check(self.root / "check")

    def bind(self, log: LogSink, now_ms: Callable[[], int]) -> None:
        self._log = log
        self._now_ms = now_ms

    # -- deployments ---------------------------------------------------------------------------

    def add_version(self, machine: str, version_id: str, source: str, filename: str) -> None:
        self._sources[f"{machine}@{version_id}"] = _load_call(machine, version_id, source, filename)

    def add_migration(self, migration: Migration, source: str, filename: str) -> None:
        self._sources[_mkey(migration)] = _migration_call(migration, source, filename)

    def version(self, machine: str, version_id: str, loaded: Loaded, indexes: Any = ()) -> Version:
        """The registry's version of a sandboxed one: its shape, and stand-ins."""
        return Version(
            machine,
            version_id,
            loaded.machine(),
            remote_authorizer,
            remote_authorizer,
            indexes,
            dict.fromkeys(loaded.http_api),
            loaded.step_timeout,
        )

    async def deploy(
        self,
        runtime: Backstate,
        machine: str,
        source: str,
        *,
        version: str = "v1",
        filename: str | None = None,
        make_current: bool = True,
    ) -> Version:
        """Deploy a machine file's source into a runtime that runs its code here
        (``Backstate(code=sandbox)``): loaded once in a fresh worker to check and
        describe it (``ProbeFailed`` unless it loads), then run by the org's workers."""
        filename = filename or f"{machine}@{version}.py"
        loaded = await self.probe(machine, version, source, filename)
        self.add_version(machine, version, source, filename)
        deployed = self.version(machine, version, loaded)
        runtime.deploy_version(deployed, make_current)
        return deployed

    async def probe(self, machine: str, version_id: str, source: str, filename: str) -> Loaded:
        """Load a version in a fresh worker of its org (then stopped): ``ProbeFailed``
        unless it loads within its limits."""
        answer = await self._probe(machine, _load_call(machine, version_id, source, filename))
        try:
            loaded = Loaded.from_json(answer)
            loaded.machine()
        except (BadOutput, DefinitionError) as exc:
            raise ProbeFailed("invalid-machine", f"{filename}: {exc}") from None
        return loaded

    async def probe_migration(self, migration: Migration, source: str, filename: str) -> None:
        await self._probe(migration.machine, _migration_call(migration, source, filename))

    async def _probe(self, machine: str, call: dict[str, Any]) -> Any:
        org = _org(machine)
        worker = Worker(org, TRANSITIONS, self._scratch(org), self.limits)
        try:
            await worker.start()
            answer = await worker.submit(call, self.limits.load_seconds)
        except WorkerDied as died:
            code = "user-code-timeout" if died.kind == "timeout" else "user-code-crashed"
            what = (
                f"loading it took more than its {self.limits.load_seconds:g} s"
                if died.kind == "timeout"
                else f"loading it stopped its worker ({died.detail})"
            )
            raise ProbeFailed(code, what) from None
        finally:
            await worker.close()
        error = answer.get("error")
        if isinstance(error, dict):
            line = error.get("line")
            raise ProbeFailed(
                str(error.get("code")),
                str(error.get("message")),
                line if isinstance(line, int) else None,
            )
        return answer.get("ok")

    # -- the calls -----------------------------------------------------------------------------

    async def initial(
        self,
        version: Version,
        instance: str,
        input: Any,
        context: dict[str, Any] | None,
        check: WriteCheck | None,
    ) -> Step:
        answer = await self._call(
            version,
            instance,
            {
                "op": "initial",
                "version": _vkey(version),
                "instance": instance,
                "input": input,
                "context": context,
                "check": _check(check),
            },
            [_vkey(version)],
        )
        return self._step(version, answer)

    async def transition(
        self,
        version: Version,
        instance: str,
        snapshot: Snapshot,
        event: dict[str, Any],
        check: WriteCheck | None,
    ) -> Step:
        call = TransitionCall(version, instance, snapshot, event, check)
        answer = await self._call(version, instance, _transition(call), [_vkey(version)])
        return self._step(version, answer)

    async def transitions(self, calls: list[TransitionCall]) -> list[Step | BackstateError]:
        """Transitions of one org's instances in one frame to one worker, answered in
        one (a round's calls cross the process boundary together): each as
        ``transition`` would give it. Calls the worker did not answer (it died, or ran
        out of time on one of them) are then made one by one, so only the call at fault
        fails."""
        first = calls[0].version
        workers = self._workers(_org(first.machine_name))
        message = {"op": "batch", "calls": [_transition(c) for c in calls]}
        needs = list(dict.fromkeys(_vkey(c.version) for c in calls))
        answers: Any = []
        try:
            answer = await workers.call(TRANSITIONS, message, needs, True, len(calls))
            answers = answer.get("answers")
        except WorkerDied as died:
            logger.warning(
                "%s: a worker died running %d transitions (%s); making them one by one",
                first.machine_name,
                len(calls),
                died.detail,
            )
        results: list[Step | BackstateError] = []
        for call, body in zip(calls, answers if isinstance(answers, list) else [], strict=False):
            try:
                if not isinstance(body, dict):
                    raise _garbage(call.version, "an answer is an object")
                step = self._result(call.version, call.instance, body, None)
                results.append(self._step(call.version, step))
            except BackstateError as exc:
                results.append(exc)
        if len(results) < len(calls):
            results.extend(await asyncio.gather(*(self._one(c) for c in calls[len(results) :])))
        return results

    async def _one(self, call: TransitionCall) -> Step | BackstateError:
        try:
            return await self.transition(*call)
        except BackstateError as exc:
            return exc

    def _step(self, version: Version, answer: Any) -> Step:
        try:
            if not isinstance(answer, dict):
                raise BadOutput("a step is an object")
            text = answer.get("snapshotText")
            if text is None:
                snapshot = _snapshot(version.machine, answer.get("snapshot"))
            else:
                snapshot = _snapshot_text(version.machine, text)
            unhandled = answer.get("unhandled")
            if unhandled is not None:
                try:
                    snapshot.unhandled = checked_unhandled(unhandled)
                except ValueError as exc:
                    raise BadOutput(str(exc)) from None
            return Step(snapshot, decode_effects(answer.get("effects")))
        except BadOutput as exc:
            raise _garbage(version, str(exc)) from None

    async def may_read(
        self, version: Version, instance: str, context: Any, value: Any, auth: dict[str, Any]
    ) -> bool:
        answer = await self._call(
            version,
            instance,
            {
                "op": "read",
                "version": _vkey(version),
                "instance": instance,
                "context": context,
                "state": value,
                "auth": auth,
            },
            [_vkey(version)],
            error=Forbidden,
        )
        if not isinstance(answer, bool):
            raise _garbage(version, "allow_read must answer true or false")
        return answer

    async def http_api(self, version: Version, slug: str, which: str, arg: Any) -> Any:
        return await self._call(
            version,
            slug,
            {"op": "http", "version": _vkey(version), "slug": slug, "which": which, "arg": arg},
            [_vkey(version)],
        )

    async def upgrade(
        self,
        source: Version,
        target: Version,
        chain: list[Migration],
        instance: str,
        snapshot: Snapshot,
    ) -> Upgraded:
        answer = await self._call(
            target,
            instance,
            {
                "op": "upgrade",
                "source": _vkey(source),
                "target": _vkey(target),
                "chain": [_mkey(m) for m in chain],
                "instance": instance,
                "snapshot": snapshot.to_json(),
            },
            [_vkey(source), _vkey(target), *(_mkey(m) for m in chain)],
            error=MigrationFailed,
        )
        try:
            if not isinstance(answer, dict):
                raise BadOutput("an upgrade's answer is an object")
            upgraded = _snapshot(target.machine, answer.get("snapshot"))
            try:
                return Upgraded(upgraded, checked_timers(answer.get("timers")))
            except ValueError as exc:
                raise BadOutput(str(exc)) from None
        except BadOutput as exc:
            raise MigrationFailed("migration-failed", f"the upgraded state: {exc}") from None

    async def dry_run(
        self,
        source: Version,
        target: Version,
        chain: list[Migration],
        instance: str,
        rows: list[Any],
    ) -> UpgradeReport:
        answer = await self._call(
            target,
            instance,
            {
                "op": "dry_run",
                "source": _vkey(source),
                "target": _vkey(target),
                "chain": [_mkey(m) for m in chain],
                "instance": instance,
                "rows": [{"seq": r.seq, "event": r.event, "snapshot": r.snapshot} for r in rows],
            },
            [_vkey(source), _vkey(target), *(_mkey(m) for m in chain)],
            error=MigrationFailed,
        )
        try:
            return _report(answer)
        except BadOutput as exc:
            raise _garbage(target, str(exc)) from None

    async def run_action(
        self, version: Version, instance: str, effect: RunAction, effect_id: str
    ) -> None:
        ref = effect.fn.ref if isinstance(effect.fn, Remote) else None
        try:
            call = self._call(
                version,
                instance,
                {
                    "op": "action",
                    "version": _vkey(version),
                    "instance": instance,
                    "ref": ref,
                    "name": effect.name,
                    "params": effect.params,
                    "context": effect.context,
                    "event": effect.event,
                    "effect": effect_id,
                    "secrets": _secrets(),
                },
                [_vkey(version)],
                role=EFFECTS,
            )
            await asyncio.wait_for(call, ACTION_TIMEOUT)
        except (BackstateError, TimeoutError) as exc:  # logged, never retried
            reason = exc.message if isinstance(exc, BackstateError) else "it timed out"
            self._line(version, instance, "error", f"action {effect.name!r} failed: {reason}")

    async def run_service(
        self, version: Version, instance: str, effect: StartActor, effect_id: str, timeout: float
    ) -> Any:
        logic = effect.logic
        message = {
            "op": "service",
            "version": _vkey(version),
            "instance": instance,
            "ref": logic.ref if isinstance(logic, Remote) else None,
            "child": effect.id,
            "src": effect.src,
            "input": effect.input,
            "effect": str(effect_id),
            "attempt": getattr(effect_id, "attempt", 1),
            "timeout": timeout,
            "secrets": _secrets(),
        }
        try:
            return await asyncio.wait_for(
                self._call(version, instance, message, [_vkey(version)], role=EFFECTS), timeout
            )
        except UserCodeFailed as exc:
            raise UserRaised(exc.code, exc.message) from None

    async def _call(
        self,
        version: Version,
        instance: str,
        message: dict[str, Any],
        needs: list[str],
        *,
        role: str = TRANSITIONS,
        error: type[BackstateError] | None = None,
    ) -> Any:
        org = _org(version.machine_name)
        workers = self._workers(org)
        if role == EFFECTS and workers.egress is not None:
            await self.egress.open(org, workers.egress)
        try:
            answer = await workers.call(role, message, needs, role == TRANSITIONS)
        except WorkerDied as died:
            where = f"{version.machine_name}@{version.id}/{instance}"
            logger.error(
                "%s: the worker running its %s %s: %s", where, message["op"], died.kind, died.detail
            )
            if died.kind == "timeout":
                failure: BackstateError = UserCodeTimeout(
                    "user-code-timeout",
                    f"machine code ran past its {self.limits.cpu_seconds:g} s limit",
                )
            else:
                failure = UserCodeFailed(
                    "user-code-crashed", f"machine code stopped its worker ({died.detail})"
                )
            raise _as(failure, error) from None
        return self._result(version, instance, answer, error)

    def _workers(self, org: str) -> OrgWorkers:
        workers = self.orgs.get(org)
        if workers is None:
            socket = self._sockets / f"{hashlib.sha256(org.encode()).hexdigest()[:16]}.sock"
            workers = self.orgs[org] = OrgWorkers(
                org, self._scratch(org), self.limits, self._sources.__getitem__, socket
            )
        return workers

    def _result(
        self,
        version: Version,
        instance: str,
        answer: dict[str, Any],
        error: type[BackstateError] | None,
    ) -> Any:
        """What a call's answer holds (its logs go to the log sink), or its error."""
        self._logs(version, instance, answer.get("logs"))
        if "ok" in answer:
            return answer["ok"]
        if isinstance(answer.get("raised"), dict):
            raised = answer["raised"]
            raise UserRaised(
                str(raised.get("name")), str(raised.get("message")), raised.get("status")
            )
        failure = _failure(answer.get("error"))
        raise _as(failure, error)

    def _logs(self, version: Version, instance: str, logs: Any) -> None:
        if not isinstance(logs, list):
            return
        for line in logs:
            if (
                isinstance(line, list)
                and len(line) == 2
                and line[0] in LEVELS
                and isinstance(line[1], str)
            ):
                self._line(version, instance, line[0], line[1])

    def _line(self, version: Version, instance: str, level: str, message: str) -> None:
        self._log(
            LogRow(self._now_ms(), version.machine_name, version.id, instance, level, message)
        )

    def _scratch(self, org: str) -> Path:
        return self.root / org / "scratch"

    async def close(self) -> None:
        orgs, self.orgs = self.orgs, {}
        for workers in orgs.values():
            await workers.close()
        await self.egress.close()
        shutil.rmtree(self._sockets, ignore_errors=True)


def _org(machine: str) -> str:
    return namespace_of(machine) or "-"


def _vkey(version: Version) -> str:
    """How a worker knows a version (ids are unique per machine, not per org)."""
    return f"{version.machine_name}@{version.id}"


def _mkey(migration: Migration) -> str:
    return f"{migration.machine}#{migration.id}"


def _load_call(machine: str, version_id: str, source: str, filename: str) -> dict[str, Any]:
    return {
        "op": "load",
        "key": f"{machine}@{version_id}",
        "version": version_id,
        "machine": machine,
        "source": source,
        "filename": filename,
    }


def _migration_call(migration: Migration, source: str, filename: str) -> dict[str, Any]:
    return {
        "op": "load_migration",
        "key": _mkey(migration),
        "migration": migration.id,
        "machine": migration.machine,
        "from": migration.from_version,
        "to": migration.to_version,
        "source": source,
        "filename": filename,
    }


def _encoded(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot for a call: its JSON text as stored, once it has been (encoded once
    only), else the snapshot."""
    if snapshot.json_text is not None:
        return {"snapshotText": snapshot.json_text}
    return {"snapshot": snapshot.to_json()}


def _transition(call: TransitionCall) -> dict[str, Any]:
    return {
        "op": "transition",
        "version": _vkey(call.version),
        "instance": call.instance,
        **_encoded(call.snapshot),
        "event": call.event,
        "check": _check(call.check),
    }


def _check(check: WriteCheck | None) -> dict[str, Any] | None:
    return None if check is None else {"auth": check.auth_context, "type": check.write_type}


_STATUSES = frozenset(("active", "done", "error", "stopped"))


def _snapshot(machine: Machine, data: Any) -> Snapshot:
    # On the event loop for every sandboxed transition: the usual snapshot (no children,
    # no history) is checked without a loop.
    if not isinstance(data, dict):
        raise BadOutput("a snapshot is an object")
    status = data.get("status")
    if not isinstance(status, str) or status not in _STATUSES:
        raise BadOutput("a snapshot's status is active, done, error or stopped")
    children = data.get("children")
    if children and (
        not isinstance(children, dict) or not all(isinstance(c, dict) for c in children.values())
    ):
        raise BadOutput("a snapshot's children are objects")
    history = data.get("historyValue")
    if history and (
        not isinstance(history, dict)
        or not all(
            isinstance(ids, list) and all(isinstance(i, str) for i in ids)
            for ids in history.values()
        )
    ):
        raise BadOutput("a snapshot's history is lists of state ids")
    try:
        return machine.resolve_snapshot(data)
    except (ExecutionError, KeyError, TypeError, AttributeError) as exc:
        raise BadOutput(f"not a state of this machine: {exc}") from None


def _snapshot_text(machine: Machine, text: Any) -> Snapshot:
    """A snapshot a worker sent as JSON text. The text is kept for the commit (so it is
    not encoded again) only when it holds nothing but the snapshot, is no longer than
    the largest context and nests no deeper than the runtime's encoder would allow;
    else the snapshot is encoded again by the host, as one sent as an object is."""
    if not isinstance(text, str):
        raise BadOutput("a snapshot's text is a string")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadOutput(f"a snapshot's text is not JSON: {exc}") from None
    snapshot = _snapshot(machine, data)
    if (
        len(text) <= MAX_CONTEXT_BYTES
        and data.keys() <= SNAPSHOT_KEYS
        and text.count("{") + text.count("[") <= MAX_NESTING
        and data["value"] == snapshot.value
    ):
        snapshot.json_text = text
    return snapshot


def _report(data: Any) -> UpgradeReport:
    if not isinstance(data, dict):
        raise BadOutput("a dry run's report is an object")
    try:
        report = UpgradeReport(
            str(data["fromMachineVersionId"]),
            str(data["toMachineVersionId"]),
            [str(m) for m in data["migrationPath"]],
            int(data["replayed"]),
            data["divergedAt"] if isinstance(data["divergedAt"], int) else None,
            data.get("event"),
            data.get("expected"),
            data.get("actual"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadOutput(f"a dry run's report: {exc}") from None
    return report


_ERRORS: dict[str, type[BackstateError]] = {
    "event-rejected": EventRejected,
    "authorizer-failed": Forbidden,
    "rejected-by-machine-authorizer": Forbidden,
    "migration-failed": MigrationFailed,
    "user-code-timeout": UserCodeTimeout,
}


def _failure(error: Any) -> BackstateError:
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        return UserCodeFailed("invalid-user-code-output", "the worker's answer has no result")
    code, message = error["code"], str(error.get("message"))
    kind = _ERRORS.get(code)
    if kind is None:
        status = error.get("status")
        kind = InvalidRequest if status == 400 else Forbidden if status == 403 else UserCodeFailed
    return kind(code, message)


def _as(failure: BackstateError, kind: type[BackstateError] | None) -> BackstateError:
    """``failure`` as the kind of error the call's caller expects (a migration's
    timeout is a failed migration)."""
    if kind is None or isinstance(failure, kind):
        return failure
    return kind(failure.code, failure.message)


def _garbage(version: Version, message: str) -> UserCodeFailed:
    logger.error("%s@%s: a worker answered garbage: %s", version.machine_name, version.id, message)
    return UserCodeFailed(
        "invalid-user-code-output", f"machine code's output was refused: {message}"
    )


def _secrets() -> dict[str, str]:
    """The org's secrets, for its effects worker only (set around the effect by the
    runtime's effect runner, see runtime/_secrets)."""
    found = current_secrets.get()
    return dict(found()) if found is not None else {}
