"""Tracing real processes (placeholder docstring, rewritten below)."""

from vmasim.trace.tracer import Options, TraceResult, trace

__all__ = ["Options", "TraceResult", "trace"]
