"""Delivery activities: send through a fallback chain, sweep pending receipts."""
