"""Benchmarks of airflow-provider-aleph, measured side by side with what users would use instead.

``make bench`` runs :mod:`benchmarks.run`, which rewrites the results table in ``benchmarks/README.md``.
Every measurement runs the Segmind emulator in its own process; nothing here is a timed test.
"""

from __future__ import annotations
