"""Code shared by the tests and the benchmarks: both import it; no test imports ``benchmarks``.

- :mod:`tests.support.deployment`: a real Airflow deployment (scheduler, dag-processor, triggerer,
  api-server) driven through its REST API, for ``tests/e2e`` and ``benchmarks/slot_time.py``;
- :mod:`tests.support.intervals`: running intervals of task instances, from Airflow's own records;
- :mod:`tests.support.ledger`: the soak's accounting of paid jobs, for ``benchmarks/soak.py``.
"""

from __future__ import annotations
