"""Pydantic models for everything a user configures; validated once, before anything runs."""
