"""Incentive task activities: progress from the outbox, reward issuance steps."""
