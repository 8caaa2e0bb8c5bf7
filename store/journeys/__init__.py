"""Journeys in Postgres: versions, per-contact state, entries and history."""
