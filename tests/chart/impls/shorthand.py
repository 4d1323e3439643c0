"""The guards and actions of the differential test's runner (tests/chart/random_charts.py,
xstate_runner.mjs), so that the cases in cases/shorthand run unchanged on XState v5."""

from tests.chart.random_charts import ACTIONS, GUARDS

__all__ = ["ACTIONS", "GUARDS"]
