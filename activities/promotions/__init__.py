"""Promotion activities: order reservations and their release."""
