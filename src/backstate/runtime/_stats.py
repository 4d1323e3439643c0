"""What the processor counts while it runs, for ``/metrics`` (backstate.server._metrics).

Plain numbers, read when something asks for them: counting costs the event path an
addition, and the runtime knows nothing of the format they are exported in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Stats:
    commits: int = 0  # rounds durably written
    commit_failures: int = 0  # rounds the store refused (their callers got 503)
    commit_seconds: float = 0.0  # time in the store's commit, summed over commits
    transitions: int = 0  # transitions durably written (creations included)
    batches: int = 0  # calls to sandboxed code carrying many instances' transitions
    batched: int = 0  # the transitions those calls carried
    handled: Counter[str] = field(default_factory=Counter)  # work items, by kind
    refused: Counter[str] = field(default_factory=Counter)  # failed work items, by code
