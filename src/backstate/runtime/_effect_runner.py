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
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from backstate.chart import RunAction, StartActor
from backstate.store import InboxRow, LogRow

from ._entries import Entry, Service, Work
from ._errors import InvalidRequest
from ._usercode import UserRaised

if TYPE_CHECKING:
    from ._deployments import Version
    from ._processor import Processor

logger = logging.getLogger("backstate.runtime")

current_effect_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
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
        token = current_effect_id.set(effect_id)
        try:
            call = p.code.run_action(version, entry.key[1], effect, effect_id)
            if p.code.synchronous:
                run_now(call)
                self._done(effect_id)
                return
        finally:
            current_effect_id.reset(token)
        task = asyncio.get_running_loop().create_task(
            self._action(call, effect_id), name=f"action {effect_id}"
        )
        p.tasks.add(task)
        task.add_done_callback(p.tasks.discard)

    async def _action(self, call: Coroutine[Any, Any, None], effect_id: str) -> None:
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
        entry.services[effect.id] = Service(task, effect_id, token)

    async def service(
        self, entry: Entry, version: Version, effect: StartActor, effect_id: str, token: object
    ) -> None:
        p = self.p
        current_effect_id.set(effect_id)
        event: dict[str, Any]
        failure = f"xstate.error.actor.{effect.id}"
        try:
            result = await p.code.run_service(
                version, entry.key[1], effect, effect_id, p.step_timeout
            )
            event = {"type": f"xstate.done.actor.{effect.id}", "output": result}
        except InvalidRequest as exc:  # the result is no JSON to store
            event = {"type": failure, "error": {"name": "InvalidOutput", "message": exc.message}}
        except UserRaised as exc:
            event = {"type": failure, "error": {"name": exc.name, "message": exc.message}}
        except TimeoutError:
            error = {
                "name": "Timeout",
                "message": f"stopped after the {p.step_timeout:g} s step timeout",
            }
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

    def forget_service(self, entry: Entry, child: str, token: object) -> None:
        # The state may have restarted a service with the same id in the same step.
        service = entry.services.get(child)
        if service is not None and service.token is token:
            del entry.services[child]
