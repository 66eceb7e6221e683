"""clearsim: the simulation layer (kernel, books, venue, oracle, episodes, sweeps)."""

# before anything loads numpy: one floating-point arithmetic on every AVX2 machine (see the module)
from sim.core.arithmetic import pin as _pin_arithmetic

_pin_arithmetic()
