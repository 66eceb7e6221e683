"""Margin regimes: one interface, requirements for all accounts at once."""
