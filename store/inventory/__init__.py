"""Inventory counted apart from any product catalogue, shared by every domain that hands out something limited:
promotions (orders, budgets, coupons issued) and the ledger's reward catalogue. Below the domains that use it."""
