"""Incentive task workflows: progress consumer, reward issuance saga, task lifecycle."""
