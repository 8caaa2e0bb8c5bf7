"""Segments: definitions and edits, membership, refresh and transitions, the Postgres and Elasticsearch indexes,
scoring; merge and erasure steps."""
