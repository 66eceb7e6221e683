"""clearsim: the simulation layer (kernel, books, venue, oracle, episodes, sweeps)."""
