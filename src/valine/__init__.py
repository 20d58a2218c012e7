"""Valine Orchestrator.

This package's top level imports nothing on purpose: the Discord Lambda handler's cold
start counts every import (docs/benchmarks.md), so each module loads only what it needs.
"""

__version__ = "0.1.0"
