"""Video handling in the worker, from the optional extra ``airflow-provider-aleph[media]`` (PyAV, Pillow).

``fit_input`` (:mod:`.fit`) cuts and re-encodes a long or large input before anything is spent, and
``preview`` (:mod:`.preview`) writes a poster frame and a contact sheet beside a copied output. Nothing
here imports PyAV or Pillow at module import time: a worker, triggerer or dag-processor without the
extra loads the provider as before, and only a task that asks for one of these options needs it.
"""

from __future__ import annotations

import importlib
import importlib.util

from airflow_provider_aleph.exceptions import InvalidParameter

#: What to install for the options of this package.
MEDIA_EXTRA = "airflow-provider-aleph[media]"
#: The modules of the extra: PyAV (FFmpeg's libraries in its wheels) and Pillow.
_MODULES = ("av", "PIL")


def media_available() -> bool:
    """Whether PyAV and Pillow are installed here (without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in _MODULES)


def require_media(parameter: str) -> None:
    """Refuse, before anything is spent, an option that needs the media extra where it cannot be imported
    (imported here: the task is about to use it anyway).

    :param parameter: the option asked for (``preview`` or ``fit_input``), named in the message.
    """
    missing = []
    for name in _MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise InvalidParameter(
            parameter,
            f"needs the media extra, which is not installed on this worker (missing: {', '.join(missing)}): "
            f"pip install {MEDIA_EXTRA}",
        )
