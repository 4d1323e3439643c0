"""backstate.viz: machines drawn as diagrams (mermaid ``stateDiagram-v2``) from their
outline (``backstate.chart`` outline). Pure: text in, text out. See docs/cli.md
(``backstate viz``)."""

from backstate.chart._outline import check_outline, outline

from ._mermaid import ACTIVE_CLASS, state_names, to_mermaid

__all__ = ["ACTIVE_CLASS", "check_outline", "outline", "state_names", "to_mermaid"]
