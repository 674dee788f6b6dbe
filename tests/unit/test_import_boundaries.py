"""Import boundaries: what Airflow loads never pulls in the emulator, and the tests never import ``benchmarks``.

The emulator's web server (starlette, uvicorn) is the optional extra ``airflow-provider-aleph[emulator]``:
a worker, a triggerer or the dag-processor loading the provider must work without it. Each check imports
in a fresh interpreter, so modules this test session already imported (conftest imports the emulator)
cannot hide an import.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import airflow_provider_aleph

REPO = Path(__file__).resolve().parents[2]
PACKAGE = airflow_provider_aleph.__name__
EMULATOR = f"{PACKAGE}.emulator"
#: What a user's DAG file or Airflow itself (provider discovery, workers, the triggerer) imports.
LOADED_BY_AIRFLOW = (
    f"{PACKAGE}.get_provider_info",
    f"{PACKAGE}.hooks.segmind",
    f"{PACKAGE}.operators.segmind",
    f"{PACKAGE}.operators.aleph",
    f"{PACKAGE}.sensors.segmind",
    f"{PACKAGE}.triggers.segmind",
    f"{PACKAGE}.links",
    f"{PACKAGE}.decorators.aleph",
)
#: Imports the modules named in argv[1] (JSON) in turn; prints, for each, the emulator modules loaded so far.
_PROBE = """
import importlib, json, sys
emulator = sys.argv[2]
seen = {}
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
    seen[name] = sorted(m for m in sys.modules if m == emulator or m.startswith(emulator + "."))
print(json.dumps(seen))
"""


def is_emulator(name: str) -> bool:
    return name == EMULATOR or name.startswith(f"{EMULATOR}.")


def emulator_modules_after_importing(modules: list[str]) -> dict[str, list[str]]:
    """Import ``modules`` in order in a fresh interpreter; the emulator modules loaded after each one."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(modules), EMULATOR],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(seen) == modules
    return seen


def first_culprit(seen: dict[str, list[str]]) -> str | None:
    """The first module after whose import an emulator module was loaded, with what it loaded."""
    for name, loaded in seen.items():
        if loaded:
            return f"importing {name} loaded {', '.join(loaded)}"
    return None


def package_modules() -> list[str]:
    """Every module and package of the provider, as ``pkgutil.walk_packages`` finds them."""
    found = [info.name for info in pkgutil.walk_packages(airflow_provider_aleph.__path__, prefix=f"{PACKAGE}.")]
    return [PACKAGE, *found]


def test_what_airflow_loads_does_not_import_the_emulator() -> None:
    culprit = first_culprit(emulator_modules_after_importing(list(LOADED_BY_AIRFLOW)))
    assert culprit is None, culprit


def test_no_module_outside_the_emulator_imports_it() -> None:
    modules = package_modules()
    outside = [name for name in modules if not is_emulator(name)]
    # The walk must see both sides, or the filter below proves nothing.
    assert set(LOADED_BY_AIRFLOW) <= set(outside)
    assert EMULATOR in modules
    assert f"{EMULATOR}.server" in modules

    culprit = first_culprit(emulator_modules_after_importing(outside))
    assert culprit is None, culprit


def imports_of_benchmarks(source: str, filename: str) -> list[int]:
    """The lines of every ``import benchmarks...`` / ``from benchmarks... import`` in Python ``source``."""
    lines = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if any(name == "benchmarks" or name.startswith("benchmarks.") for name in names):
            lines.append(node.lineno)
    return sorted(lines)


def test_tests_do_not_import_benchmarks() -> None:
    files = sorted((REPO / "tests").rglob("*.py"))
    assert len(files) > 20, "the walk found the test files"
    offenders = [
        f"{path.relative_to(REPO)}:{line}"
        for path in files
        for line in imports_of_benchmarks(path.read_text(encoding="utf-8"), str(path))
    ]
    assert offenders == [], "tests run the benchmarks as a user does (a subprocess) or share code via tests/support"


def test_the_benchmark_import_check_catches_every_form() -> None:
    source = (
        "from __future__ import annotations\n"
        "import benchmarks\n"
        "import os, benchmarks.report\n"
        "from benchmarks.deployment import AirflowDeployment\n"
        "if True:\n"
        "    from benchmarks import soak\n"
        "from tests.support import deployment\n"
        "import benchmarks_elsewhere\n"
        "command = ['python', '-m', 'benchmarks.run']\n"
    )
    assert imports_of_benchmarks(source, "probe.py") == [2, 3, 4, 6]


#: Imports the modules named in argv[1] (JSON); prints the media libraries (PyAV, Pillow) loaded.
_MEDIA_PROBE = """
import importlib, json, sys
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("av", "PIL"))))
"""


def test_the_provider_imports_the_media_extra_only_when_a_task_uses_it() -> None:
    # The [media] extra is optional: loading the provider, the media package included, must not need it.
    modules = [name for name in package_modules() if not is_emulator(name)]
    assert f"{PACKAGE}.media.preview" in modules
    done = subprocess.run(
        [sys.executable, "-c", _MEDIA_PROBE, json.dumps(modules)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
