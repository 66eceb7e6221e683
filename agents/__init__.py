"""clearsim: trader agents and populations."""

from sim.core import arithmetic as _arithmetic  # noqa: F401 -- importing sim pins numpy's arithmetic first
