"""Thin Temporal activities: each calls store/, channels/ and domain/ and nothing else."""
