"""clearsim: the clearing house (instruments, pricing, ledger, margin, liquidation, loss absorption)."""
