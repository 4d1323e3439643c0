"""Headless settings (State Backed's headless example, §8.6): one instance per (user,
namespace), named ``<user>-<namespace>``, holding ``public.settings``. ``set
{settings}`` merges the given keys over the stored ones (a shallow merge), so clients
can change one setting without knowing the others.

The user is the auth context's ``sub`` or, for anonymous sessions, its ``did``; only
that user reads and writes, and only the instance named after them and the namespace."""

from __future__ import annotations

from typing import Any

from backstate.chart import assign, setup


def _merge(context: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    settings = {**context["public"]["settings"], **(event.get("settings") or {})}
    return {**context["public"], "settings": settings}


machine = setup(actions={"merge": assign({"public": _merge})}).create_machine(
    {
        "id": "settings",
        "initial": "ready",
        "context": {"user": "", "namespace": "default", "public": {"settings": {}}},
        "states": {"ready": {"on": {"set": {"actions": "merge"}}}},
    }
)


def _is_owner(machine_instance_name: str, auth_context: dict[str, Any], context: Any) -> bool:
    if not isinstance(context, dict):
        return False
    # The creation context may leave the namespace to its default.
    user, namespace = context.get("user"), context.get("namespace") or "default"
    caller = auth_context.get("sub") or auth_context.get("did")
    return bool(user) and user == caller and machine_instance_name == f"{user}-{namespace}"


def allow_read(
    *, machine_instance_name: str, auth_context: dict[str, Any], context: Any, **_: Any
) -> bool:
    return _is_owner(machine_instance_name, auth_context, context)


def allow_write(
    *, machine_instance_name: str, auth_context: dict[str, Any], context: Any, **_: Any
) -> bool:
    return _is_owner(machine_instance_name, auth_context, context)
