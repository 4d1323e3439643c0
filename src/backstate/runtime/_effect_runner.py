"""Effects run once their transition is committed: custom actions and services.

Both go through ``UserCode``. An action runs at most once (its effect row is finished
in the next commit, whatever it did); a failing one is logged. A service's result, or
its error (including the step timeout), comes back to its instance as an event in the
instance's queue; if the instance has moved on to another node meanwhile, it goes
there through the inbox, in the commit that finishes the effect.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from backstate.chart import RunAction, StartActor
from backstate.store import InboxRow, LogRow

from ._entries import Entry, Service, Work
from ._errors import InvalidRequest
from ._progress import Progress, checked, current_progress
from ._retries import initial
from ._secrets import current_secrets
from ._usercode import UserRaised

if TYPE_CHECKING:
    from ._deployments import Version
    from ._processor import Processor

logger = logging.getLogger("backstate.runtime")


class EffectId(str):
    """An effect's id, as ``current_effect()`` gives it: a string (the stable id), with
    the ``attempt`` of a retried service (1 for everything else)."""

    attempt: int

    def __new__(cls, effect_id: str, attempt: int = 1) -> EffectId:
        made = super().__new__(cls, effect_id)
        made.attempt = attempt
        return made


current_effect_id: contextvars.ContextVar[EffectId | None] = contextvars.ContextVar(
    "backstate_effect", default=None
)


def run_now(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """The result of a coroutine that completes without suspending (user code run in
    this process: see ``UserCode.synchronous``)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("synchronous user code suspended")


class EffectRunner:
    def __init__(self, processor: Processor) -> None:
        self.p = processor

    def run_action(self, entry: Entry, version: Version, effect: RunAction, effect_id: str) -> None:
        p = self.p
        secrets = self._secrets(entry.key[0])
        token = current_effect_id.set(EffectId(effect_id))
        held = current_secrets.set(secrets)
        try:
            call = p.code.run_action(version, entry.key[1], effect, effect_id)
            if p.code.synchronous:
                run_now(call)
                self._done(effect_id)
                return
        finally:
            current_effect_id.reset(token)
            current_secrets.reset(held)
        task = asyncio.get_running_loop().create_task(
            self._action(call, effect_id, secrets), name=f"action {effect_id}"
        )
        p.tasks.add(task)
        task.add_done_callback(p.tasks.discard)

    async def _action(
        self,
        call: Coroutine[Any, Any, None],
        effect_id: str,
        secrets: Callable[[], Mapping[str, str]],
    ) -> None:
        current_secrets.set(secrets)  # the coroutine runs in this task's context
        try:
            await call
        finally:
            self._done(effect_id)

    def _done(self, effect_id: str) -> None:
        self.p.pending_done.append(effect_id)
        self.p.wake()

    def start_service(
        self, entry: Entry, version: Version, effect: StartActor, effect_id: str
    ) -> None:
        if entry.starting.get(effect.id) != effect_id:
            return  # a later round, built while this one committed, already stopped it
        del entry.starting[effect.id]
        token = object()
        task = asyncio.get_running_loop().create_task(
            self.service(entry, version, effect, effect_id, token), name=f"service {effect_id}"
        )
        retry = initial(effect)
        entry.services[effect.id] = Service(task, effect_id, token, effect, version, retry)

    def attempt(self, entry: Entry, child: str, service: Service) -> None:
        """Start a retried service's next attempt (see _retries)."""
        if entry.services.get(child) is not service or self.p.closing:
            return  # stopped since
        assert service.start is not None and service.version is not None
        assert service.retry is not None
        token = object()
        attempt = service.retry["attempt"]
        task = asyncio.get_running_loop().create_task(
            self.service(entry, service.version, service.start, service.effect_id, token, attempt),
            name=f"service {service.effect_id} attempt {attempt}",
        )
        entry.services[child] = Service(
            task, service.effect_id, token, service.start, service.version, service.retry
        )

    async def service(
        self,
        entry: Entry,
        version: Version,
        effect: StartActor,
        effect_id: str,
        token: object,
        attempt: int = 1,
    ) -> None:
        p = self.p
        current = EffectId(effect_id, attempt)
        current_effect_id.set(current)
        current_progress.set(self._progress_sink(entry, effect.id))
        current_secrets.set(self._secrets(entry.key[0]))
        event: dict[str, Any]
        failure = f"xstate.error.actor.{effect.id}"
        step_timeout = version.step_timeout or p.step_timeout
        timeout = step_timeout if effect.timeout_ms is None else effect.timeout_ms / 1000
        try:
            result = await p.code.run_service(version, entry.key[1], effect, current, timeout)
            event = {"type": f"xstate.done.actor.{effect.id}", "output": result}
        except InvalidRequest as exc:  # the result is no JSON to store
            event = {"type": failure, "error": {"name": "InvalidOutput", "message": exc.message}}
        except UserRaised as exc:
            event = {"type": failure, "error": {"name": exc.name, "message": exc.message}}
        except TimeoutError:
            limit = "step timeout" if effect.timeout_ms is None else "timeout_ms"
            error = {"name": "Timeout", "message": f"stopped after the {timeout:g} s {limit}"}
            event = {"type": failure, "error": error}
        except asyncio.CancelledError:
            # Stopped by a transition (finished in that transition's commit), or by a
            # shutdown or failed commit (then it was interrupted: recovery reports it).
            raise
        except Exception as exc:  # running it failed (a worker could not start...)
            logger.exception("%s/%s: service %s could not run", *entry.key, effect.src)
            event = {"type": failure, "error": {"name": type(exc).__name__, "message": str(exc)}}
        if event["type"] == failure:
            error = event["error"]
            text = f"service {effect.src!r} ({effect.id!r}) failed: {error['name']}: "
            row = (version.machine_name, version.id, entry.key[1], "error", text + error["message"])
            p.log(LogRow(p.clock.now_ms(), *row))
        if p.entries.get(entry.key) is not entry or p.closing:
            return
        if not p.ownership.owns(entry.key):
            # Created here in another node's shard, which runs it since: the result goes
            # to its owner through the inbox, in the same commit that finishes the effect.
            key = entry.key
            now = p.clock.now_ms()
            p.pending_results.append(InboxRow(0, key[0], key[1], event, "service", 1, 0, now))
            p.pending_done.append(effect_id)
            self.forget_service(entry, effect.id, token)
            p.wake()
            return
        entry.queue.append(
            Work("service", event, sender="service", effect_id=effect_id, token=token)
        )
        p.ready[entry.key] = entry
        p.wake()

    def _secrets(self, machine: str) -> Callable[[], Mapping[str, str]]:
        """The machine's secrets, read only if the effect asks (or a sandbox ships them)."""
        secrets = self.p.secrets
        return lambda: secrets(machine)

    def _progress_sink(self, entry: Entry, child: str) -> Callable[[Any], None]:
        """Where the service ``child`` publishes progress: to its instance's subscribers,
        from this event loop (the service may run in a thread)."""
        loop = asyncio.get_running_loop()
        key = entry.key

        def publish(data: Any) -> None:
            checked(data)
            item = Progress(key[0], key[1], child, data, self.p.clock.now_ms())
            loop.call_soon_threadsafe(_deliver, entry, item)

        return publish

    def forget_service(self, entry: Entry, child: str, token: object) -> None:
        # The state may have restarted a service with the same id in the same step.
        service = entry.services.get(child)
        if service is not None and service.token is token:
            del entry.services[child]


def _deliver(entry: Entry, item: Progress) -> None:
    for queue in list(entry.subscribers):
        queue.put_nowait(item)
