"""The example DAG files, loaded the way the tests use them: each a fresh module of its own."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"


def load_example(name: str) -> ModuleType:
    """Import ``example_dags/<name>.py`` afresh (its module-level settings are read again) and return it.

    :param name: the file's stem, which is also its DAG id, e.g. ``example_aleph_review``.
    """
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
