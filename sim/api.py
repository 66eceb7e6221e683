"""The scripting API, at the path scripts import (``from sim.api import run, compare, ...``).

The functions live in the experiment layer (``sim.experiment.api``); this module names the public
surface so user scripts do not depend on where the layers keep them.
"""

from sim.experiment.api import backtest, compare, load, reverse_stress, sweep
from sim.experiment.variants import counterfactual_config, regime_variants, run_variant
from sim.experiment.runs import resolve, run, validate

__all__ = ["backtest", "compare", "counterfactual_config", "load", "regime_variants", "resolve",
           "reverse_stress", "run", "run_variant", "sweep", "validate"]
