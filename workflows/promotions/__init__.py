"""Promotion workflows: one OrderWorkflow per order."""
