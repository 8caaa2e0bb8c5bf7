"""Ledger activities: the redemption saga's steps and the operations (reconciliation, expiry, retention)."""
