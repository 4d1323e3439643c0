"""The serving process's garbage collector: the start-up heap frozen, full collections rare.

CPython's full (generation 2) collection walks every tracked object, and under load it
runs whenever the objects promoted since the last one reach a quarter of the old
generation: with send-events arriving at thousands a second, that was twice a second,
each pass about 25 ms over the server's start-up heap (modules, Starlette, machine
definitions), and it alone made the p99 of send-event 17-29 ms instead of 8 ms. With
10,000 instances in memory a pass took 115 ms and the p99 reached 100 ms.

Nearly nothing the server allocates is cyclic garbage (reference counting frees it; a
refused request used to leave a cycle through its error's traceback, until
``handle_error`` cleared those frames: tests/server/test_gc.py checks that requests leave
none), so:

* what is alive once the server has started lives as long as the process: ``gc.freeze``
  moves it to a generation the collector never walks;
* full collections are considered once every ``FULL_EVERY`` collections of generation 1
  instead of every 10 (minutes apart under load, still bounded), while the young
  generations keep their defaults, so short-lived cycles are found as soon as before.

``benchmarks/serve_http.py`` measures the effect (see benchmarks/README.md).
"""

from __future__ import annotations

import gc

# Collections of generation 1 between two full collections (CPython's default is 10).
FULL_EVERY = 1000


def tune_gc() -> None:
    """Freeze the heap as it is now and make full collections rare. Call once the server
    has started (its modules imported, its machines deployed, its instances recovered)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_EVERY)
