"""A ``[core] hostname_callable`` that tells processes on one machine apart.

Airflow records the host of each job (``job.hostname``) from this callable; two triggerers on one
machine would share one name. A component started with ``ALEPH_COMPONENT_NAME`` reports that name.
"""

from __future__ import annotations

import os
import socket


def component_hostname() -> str:
    """``ALEPH_COMPONENT_NAME`` when set, else the machine's fully qualified name."""
    return os.environ.get("ALEPH_COMPONENT_NAME") or socket.getfqdn()
