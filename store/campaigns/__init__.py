"""Campaigns: definitions, runs and deliveries, the dashboard query; merge and erasure steps."""
