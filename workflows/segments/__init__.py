"""Segment workflows: scheduled refresh, the changes consumer, the Elasticsearch backfill."""
