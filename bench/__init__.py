"""Benchmarks: each prints a readable table and one JSON line with its figure and the physical limit.

A benchmark is a module in this package with `NAME`, `DESCRIPTION`, `PARAMS` (defaults) and
`async def run(ctx: BenchContext, **params) -> BenchResult`; list it in `MODULES` below.
"""

from __future__ import annotations

import importlib
from types import ModuleType

MODULES = ("broadcast", "ledger", "ingest", "segments", "pricing", "inventory", "tasks", "delivery", "journey",
           "campaign")


def registry() -> dict[str, ModuleType]:
    found = {}
    for name in MODULES:
        module = importlib.import_module(f"bench.{name}")
        found[module.NAME] = module
    return found
