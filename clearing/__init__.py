"""clearsim: the clearing house (instruments, pricing, ledger, margin, liquidation, loss absorption)."""

from sim.core import arithmetic as _arithmetic  # noqa: F401 -- importing sim pins numpy's arithmetic first
