"""Ledger workflows: one RedemptionWorkflow per order, and the scheduled operations."""
