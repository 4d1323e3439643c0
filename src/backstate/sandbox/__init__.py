"""backstate.sandbox: machine code run in sandboxed worker processes, one set per org.

See docs/security.md. ``Sandbox`` is where the runtime's ``UserCode`` runs in sandboxed
mode (the default of ``backstate serve``); ``check`` tells whether this host can.
"""

from ._egress import Rule, RuleError
from ._jail import Limits, SandboxUnavailable
from ._sandbox import Loaded, ProbeFailed, Sandbox

__all__ = [
    "Limits",
    "Loaded",
    "ProbeFailed",
    "Rule",
    "RuleError",
    "Sandbox",
    "SandboxUnavailable",
]
