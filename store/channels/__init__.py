"""Deliveries, receipts, suppressions, caps, preferences and the in-app inbox in Postgres."""
