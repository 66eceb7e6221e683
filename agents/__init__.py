"""clearsim: trader agents and populations."""
