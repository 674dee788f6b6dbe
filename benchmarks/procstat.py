"""CPU time and memory of a process, read from ``/proc`` (Linux) without third-party packages."""

from __future__ import annotations

import os
import platform
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int | None = None) -> float:
    """User plus system CPU seconds a process has used so far (its threads included, its children not).

    :param pid: the process; None for this one.
    """
    raw = Path(f"/proc/{pid or 'self'}/stat").read_text()
    # The command name (field 2) may hold spaces: count fields from the closing parenthesis.
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _TICKS


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process now, in bytes.

    :param pid: the process; None for this one.
    """
    resident = Path(f"/proc/{pid or 'self'}/statm").read_text().split()[1]
    return int(resident) * _PAGE


def _kib_field(path: Path, key: str) -> int:
    """A ``Key:   123 kB`` field of a /proc file, in KiB."""
    for line in path.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(f"{key} not in {path}")


def peak_rss_bytes(pid: int | None = None) -> int:
    """Highest resident set size a process has reached (``VmHWM``), in bytes.

    :param pid: the process; None for this one.
    """
    return _kib_field(Path(f"/proc/{pid or 'self'}/status"), "VmHWM") * 1024


def reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (Linux 4.0+); return whether it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def machine() -> dict[str, str | int | float]:
    """Cores, memory and CPU model of this machine, for the results table."""
    model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = _kib_field(Path("/proc/meminfo"), "MemTotal")
    return {
        "cores": os.cpu_count() or 0,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages: how busy the machine was around a run."""
    return os.getloadavg()
