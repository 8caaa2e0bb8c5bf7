"""Incentive tasks in Postgres: definitions, progress, reward grants."""
