"""Nudge: workflow-orchestrated marketing automation."""

__version__ = "0.1.0"
