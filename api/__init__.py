"""The HTTP API: one router and one schemas module per domain."""
