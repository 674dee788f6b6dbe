"""Run the emulator as a process of its own and learn its address, for demos, benchmarks and
end-to-end tests: ``process, base_url = spawn(["--port", "0", "--latency", "20"], log_path=...)``.

The process writes its base URL to a ``--ready-file`` once it serves; :func:`spawn` waits for that
file, so a free port (``--port 0``) needs no guessing.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

MODULE = "airflow_provider_aleph.emulator"


def spawn(
    args: Sequence[str],
    *,
    log_path: Path | None = None,
    module: str = MODULE,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 30.0,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m module *args --ready-file F`` and wait until it serves.

    :param args: the command's flags (``--help`` of the module lists them).
    :param log_path: where its output goes; a new temporary file when None.
    :param module: the module to run; a wrapper with the same ``--ready-file`` flag may stand in.
    :param python: the interpreter.
    :param env: the process's environment; this one's when None.
    :param cwd: its working directory.
    :param timeout: seconds allowed to start.
    :return: the running process and its base URL, e.g. ``http://127.0.0.1:41234``.
    :raises RuntimeError: it exited or did not serve in time (the end of its log is in the message);
        the process is killed first.
    """
    folder = Path(tempfile.mkdtemp(prefix="aleph-emulator-"))
    ready = folder / "ready"
    log_path = log_path or folder / "emulator.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [python, "-m", module, *args, "--ready-file", str(ready)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
        )
    deadline = time.monotonic() + timeout
    while not ready.exists() or not ready.read_text().strip():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(10)
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the emulator did not start within {timeout:.0f}s; see {log_path}:\n{tail}")
        time.sleep(0.05)
    return process, ready.read_text().strip()
