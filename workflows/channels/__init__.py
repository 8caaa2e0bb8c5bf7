"""Delivery workflows: the long-lived receipt sweeper."""
