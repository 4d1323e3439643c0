"""The Restate service of ``serve_http.py``'s Restate peer: a Virtual Object whose
exclusive handler adds to its durable state (one object per key, its handlers run one
at a time per key), the shape of a backstate instance taking an event.

Runs on hypercorn in the virtual environment ``restate_peer.py`` makes (it imports
Restate's Python SDK, which the project's own environment does not have).
"""

import restate

counter = restate.VirtualObject("counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    count: int = (await ctx.get("count") or 0) + delta
    ctx.set("count", count)
    return count


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    count: int = await ctx.get("count") or 0
    return count


app = restate.app(services=[counter])
