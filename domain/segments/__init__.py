"""Segment rules: the condition tree and its validation, and the reference evaluator."""
