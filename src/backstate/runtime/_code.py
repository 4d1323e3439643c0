"""The one seam through which the runtime runs user code: ``UserCode``.

Everything a machine file defines (guards, ``assign`` functions, context factories,
delays, custom actions, services, authorizers, persistent-child names, migrations) is
reached through these calls, with a version of the registry and plain data in and
out. ``TrustedCode`` runs it in this process; ``backstate.sandbox`` runs it in
sandboxed worker processes, one set per org. Either way, a call's failure is raised as
the ``BackstateError`` named below for the work that made it, and what the code prints
or logs reaches the runtime's log sink for that machine, version and instance.

``Step``: a transition's result. Its ``effects`` are the engine's, with the logic of an
actor resolved: a ``Persistent`` child with its instance name already computed, a
``RefusedChild`` when computing it failed, ``None`` for an actor the durable runtime
cannot run, or what the code's ``run_service`` takes.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from backstate.chart import Effect, ExecutionError, RunAction, Snapshot, StartActor
from backstate.store import LogRow

from . import _logs
from ._deployments import Persistent, namespace_of
from ._errors import BackstateError, EventRejected, Forbidden, InvalidRequest
from ._json import encode_state
from ._migrations import Migration, MigrationFailed, UpgradeReport, replay_upgrade, upgrade_snapshot
from ._upgrade_timers import after_timers
from ._usercode import call, describe, user_code, user_traceback

if TYPE_CHECKING:
    from ._deployments import Version

LogSink = Callable[[LogRow], None]
logger = logging.getLogger("backstate.usercode")


class Step(NamedTuple):
    snapshot: Snapshot
    effects: list[Effect]


class Upgraded(NamedTuple):
    """An upgrade's result: the migrated snapshot, and the ``after`` timers of its
    active states (``_upgrade_timers.after_timers``)."""

    snapshot: Snapshot
    timers: list[tuple[str, int]]


class RefusedChild(NamedTuple):
    """A persistent child that cannot be started: its name could not be computed."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class WriteCheck:
    """What ``allow_write`` is asked about, besides the instance's own context and state
    (for an initialization: the context the caller gave)."""

    auth_context: dict[str, Any]
    write_type: str  # "initialization" | "event"


class TransitionCall(NamedTuple):
    """The arguments of ``UserCode.transition``, for ``UserCode.transitions``."""

    version: Version
    instance: str
    snapshot: Snapshot
    event: dict[str, Any]
    check: WriteCheck | None


class UserCode(Protocol):
    """User code of deployed versions. ``synchronous``: every call but ``run_service``
    and ``run_action`` completes without suspending (the runtime then builds its rounds
    without tasks)."""

    synchronous: bool

    def bind(self, log: LogSink, now_ms: Callable[[], int]) -> None:
        """Where log lines of user code go, and the clock that stamps them."""

    async def initial(
        self,
        version: Version,
        instance: str,
        input: Any,
        context: dict[str, Any] | None,
        check: WriteCheck | None,
    ) -> Step:
        """The first snapshot (``context`` shallow-merged over the machine's); raises
        ``Forbidden`` or ``EventRejected``."""
        ...

    async def transition(
        self,
        version: Version,
        instance: str,
        snapshot: Snapshot,
        event: dict[str, Any],
        check: WriteCheck | None,
    ) -> Step:
        """``allow_write`` (when ``check``), then the transition; raises ``Forbidden`` or
        ``EventRejected``."""
        ...

    async def transitions(self, calls: list[TransitionCall]) -> list[Step | BackstateError]:
        """Many ``transition`` calls of one org's instances at once, each one's step or
        error in their order (sandboxed code: one crossing of the process boundary)."""
        ...

    async def may_read(
        self, version: Version, instance: str, context: Any, value: Any, auth: dict[str, Any]
    ) -> bool:
        """``allow_read`` of a state (its context and value); raises ``Forbidden``
        (``authorizer-failed``) when it fails."""
        ...

    async def http_api(self, version: Version, slug: str, which: str, arg: Any) -> Any:
        """The ``handler`` or ``response_mapper`` (``which``) of an HTTP-API slug of the
        version; raises ``UserRaised``."""
        ...

    async def upgrade(
        self,
        source: Version,
        target: Version,
        chain: list[Migration],
        instance: str,
        snapshot: Snapshot,
    ) -> Upgraded:
        """The snapshot migrated along ``chain``, with its ``after`` timers; raises
        ``MigrationFailed``."""
        ...

    async def dry_run(
        self,
        source: Version,
        target: Version,
        chain: list[Migration],
        instance: str,
        rows: list[Any],
    ) -> UpgradeReport: ...

    async def run_action(
        self, version: Version, instance: str, effect: RunAction, effect_id: str
    ) -> None:
        """A custom action, after its transition committed; failures are logged."""
        ...

    async def run_service(
        self, version: Version, instance: str, effect: StartActor, effect_id: str, timeout: float
    ) -> Any:
        """A service's result; raises ``UserRaised``, ``TimeoutError`` or
        ``InvalidRequest`` (a result that is no JSON)."""
        ...

    async def close(self) -> None: ...


class TrustedCode:
    """User code imported into this process (trusted mode, and the ``Backstate`` library
    embedded in a program): it runs on the runtime's event loop, services in tasks and
    threads. Nothing contains it; the boundary only turns what it raises into errors."""

    synchronous = True

    def __init__(self) -> None:
        self._log: LogSink = lambda row: None
        self._now_ms: Callable[[], int] = lambda: 0

    def bind(self, log: LogSink, now_ms: Callable[[], int]) -> None:
        self._log = log
        self._now_ms = now_ms
        _logs.install()

    def _scope(self, version: Version, instance: str) -> _logs.scope:
        return _logs.scope((version.machine_name, version.id, instance), self._log, self._now_ms)

    def _authorize(
        self,
        version: Version,
        instance: str,
        check: WriteCheck,
        context: Any,
        state: Any,
        event: dict[str, Any] | None,
    ) -> None:
        authorizer = version.allow_write
        if authorizer is None:
            return
        with user_code(
            "allow_write",
            (version.machine_name, version.id, instance),
            "authorizer-failed",
            Forbidden,
        ):
            allowed = authorizer(
                machine_instance_name=instance,
                auth_context=check.auth_context,
                context=context,
                state=state,
                event=event,
                write_type=check.write_type,
            )
        if not allowed:
            raise Forbidden(
                "rejected-by-machine-authorizer",
                f"{version.machine_name}/{instance} refused this {check.write_type}",
            )

    async def initial(
        self,
        version: Version,
        instance: str,
        input: Any,
        context: dict[str, Any] | None,
        check: WriteCheck | None,
    ) -> Step:
        with self._scope(version, instance):
            if check is not None:
                self._authorize(version, instance, check, context, None, None)
            given = {"context": context} if context is not None else {}
            step = self._step(
                version,
                instance,
                "machine code",
                lambda: version.machine.initial_transition(input, **given),
                lambda message: f"creating {version.machine_name}/{instance} failed: {message}",
            )
            return self._resolved(version, instance, step)

    async def transition(
        self,
        version: Version,
        instance: str,
        snapshot: Snapshot,
        event: dict[str, Any],
        check: WriteCheck | None,
    ) -> Step:
        with self._scope(version, instance):
            if check is not None:
                self._authorize(version, instance, check, snapshot.context, snapshot.value, event)
            step = self._step(
                version,
                instance,
                "machine code",
                lambda: version.machine.transition(snapshot, event),
                lambda message: (
                    f"{version.machine_name}/{instance} rejected {event.get('type')!r}: {message}"
                ),
            )
            return self._resolved(version, instance, step)

    async def transitions(self, calls: list[TransitionCall]) -> list[Step | BackstateError]:
        results: list[Step | BackstateError] = []
        for one in calls:
            try:
                results.append(await self.transition(*one))
            except BackstateError as exc:
                results.append(exc)
        return results

    def _step(
        self,
        version: Version,
        instance: str,
        what: str,
        run: Callable[[], tuple[Snapshot, list[Effect]]],
        rejected: Callable[[str], str],
    ) -> Step:
        try:
            with user_code(
                what,
                (version.machine_name, version.id, instance),
                "event-rejected",
                EventRejected,
            ):
                snap, effects = run()
        except ExecutionError as exc:
            message = rejected(exc.message)
            _log_traceback(version, instance, message, exc.__cause__)
            raise EventRejected("event-rejected", message) from exc
        except EventRejected as exc:
            raise EventRejected("event-rejected", rejected(exc.message)) from None
        return Step(snap, effects)

    def _resolved(self, version: Version, instance: str, step: Step) -> Step:
        """Actors' logic as ``Step`` promises: persistent children named (user code:
        the name may be a function of the input), what cannot run marked."""
        for effect in step.effects:
            if not isinstance(effect, StartActor):
                continue
            logic = effect.logic
            if isinstance(logic, Persistent):
                try:
                    with user_code(
                        f"the name of persistent({logic.machine!r})",
                        (version.machine_name, version.id, instance),
                        "invalid-address",
                        InvalidRequest,
                    ):
                        name = logic.name_for(instance, effect.id, effect.input)
                    effect.logic = Persistent(logic.machine, name)
                except InvalidRequest as exc:
                    effect.logic = RefusedChild(exc.code, exc.message)
            elif not callable(logic):
                effect.logic = None
        return step

    async def may_read(
        self, version: Version, instance: str, context: Any, value: Any, auth: dict[str, Any]
    ) -> bool:
        authorizer = version.allow_read
        if authorizer is None:
            return True
        with (
            self._scope(version, instance),
            user_code(
                "allow_read",
                (version.machine_name, version.id, instance),
                "authorizer-failed",
                Forbidden,
            ),
        ):
            return bool(
                authorizer(
                    machine_instance_name=instance,
                    auth_context=auth,
                    context=context,
                    state=value,
                )
            )

    async def http_api(self, version: Version, slug: str, which: str, arg: Any) -> Any:
        with self._scope(version, slug):
            return await call(version.http_api[slug][which], arg)

    async def upgrade(
        self,
        source: Version,
        target: Version,
        chain: list[Migration],
        instance: str,
        snapshot: Snapshot,
    ) -> Upgraded:
        where = (target.machine_name, target.id, instance)
        with (
            self._scope(target, instance),
            user_code("a migration", where, "migration-failed", MigrationFailed),
        ):
            data = upgrade_snapshot(snapshot.to_json(), chain, source.machine, target.machine)
        try:
            upgraded = target.machine.resolve_snapshot(data)
            with (
                self._scope(target, instance),
                user_code(
                    "a delay of the upgraded state", where, "migration-failed", MigrationFailed
                ),
            ):
                return Upgraded(upgraded, after_timers(upgraded))
        except ExecutionError as exc:
            raise MigrationFailed("migration-failed", exc.message) from exc

    async def dry_run(
        self,
        source: Version,
        target: Version,
        chain: list[Migration],
        instance: str,
        rows: list[Any],
    ) -> UpgradeReport:
        with (
            self._scope(target, instance),
            user_code(
                "the dry run",
                (target.machine_name, target.id, instance),
                "migration-failed",
                MigrationFailed,
            ),
        ):
            return replay_upgrade(source, target, chain, rows)

    async def run_action(
        self, version: Version, instance: str, effect: RunAction, effect_id: str
    ) -> None:
        with self._scope(version, instance):
            try:
                effect.run()
            except BaseException as exc:  # user code: whatever it raises is its own
                _logs.capture("error", f"action {effect.name!r} raised {describe(exc)}")
                traceback.clear_frames(exc.__traceback__)

    async def run_service(
        self, version: Version, instance: str, effect: StartActor, effect_id: str, timeout: float
    ) -> Any:
        with self._scope(version, instance):
            result = await asyncio.wait_for(call(effect.logic, effect.input), timeout)
        encode_state(result, "the service's result")
        return result

    async def close(self) -> None:
        pass


def _log_traceback(
    version: Version, instance: str, message: str, raised: BaseException | None
) -> None:
    """The traceback of what machine code raised in a step, to the instance's logs
    (``backstate logs get`` shows it) and the server's: the caller gets one line."""
    if raised is None:
        return
    text = f"{message}\n{user_traceback(raised)}"
    # The instance's logs are its org's: its machine as the org names it (no namespace).
    namespace = namespace_of(version.machine_name)
    _logs.capture("error", text.replace(f"{namespace}.", "", 1) if namespace else text)
    logger.warning("%s@%s/%s: %s", version.machine_name, version.id, instance, text)
    traceback.clear_frames(raised.__traceback__)
