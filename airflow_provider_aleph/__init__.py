"""Apache Airflow provider for Segmind's Runway Gen4 Aleph and every Segmind v2 model."""

from __future__ import annotations

__version__ = "0.1.0"
