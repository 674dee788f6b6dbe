"""The package as users get it: the sdist and the wheel built from this tree, checked as PyPI would, then
the wheel installed into a fresh virtual environment with Airflow, where Airflow must find the provider.

The archives are built once per run with ``uv build`` (the sdist from the tree, the wheel from the sdist,
as pip and PyPI's builders do), into ``test-artifacts/dist/``. The build backend comes from the lock
file, so a build is reproducible; uv's cache is warm after ``make venv``, so this adds seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.airflow_independent

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "airflow_provider_aleph"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
VERSION = PROJECT["version"]
DIST_DIR = REPO / "test-artifacts" / "dist"
LOCK = REPO / "requirements" / "lock-airflow-3.3.txt"
#: The tools of the project's own tests, lint and benchmarks: none may reach a user's install.
DEVELOPMENT_TOOLS = frozenset(
    {"pytest", "pytest-asyncio", "pytest-timeout", "playwright", "ruff", "mypy", "matplotlib", "statsd", "twine"}
)
#: What the sdist holds besides the package, its tests and the example DAGs.
SDIST_TOP_FILES = ("LICENSE", "README.md", "CHANGELOG.md", "CONTRIBUTING.md", "pyproject.toml", "PKG-INFO")


def _uv() -> str:
    """The uv that ``make venv`` installs beside this interpreter, or the one on PATH."""
    beside = Path(sys.executable).with_name("uv")
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        pytest.fail("uv is not installed: `make venv` installs it in the virtual environment")
    return found


def _run(
    command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False, env=env, cwd=cwd)
    shown = " ".join(command)
    assert done.returncode == 0, f"{shown} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _tree_files(folder: str) -> set[str]:
    """The files under ``folder`` of this tree, caches left out."""
    root = REPO / folder
    return {
        path.relative_to(REPO).as_posix()
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


#: What a build never sees: environments, caches, outputs, and the egg-info that an editable install leaves
#: in the tree (setuptools would merge its stale file list into the sdist, hiding a MANIFEST.in mistake).
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv*", "test-artifacts", "*.egg-info", "build", "dist", "__pycache__", "*.py[cod]", ".*_cache"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel of this tree: ``{"sdist": path, "wheel": path}``.

    Built from a copy of the tree, as a fresh clone would build, so that nothing the build writes (its
    egg-info) lands in the tree the rest of the suite imports from.
    """
    source = tmp_path_factory.mktemp("build") / "source"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCES)
    shutil.rmtree(DIST_DIR, ignore_errors=True)
    _run([_uv(), "build", "--quiet", "--out-dir", str(DIST_DIR), "--build-constraints", str(LOCK), str(source)])
    (sdist,) = DIST_DIR.glob("*.tar.gz")
    (wheel,) = DIST_DIR.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


@pytest.fixture(scope="module")
def wheel_metadata(built: dict[str, Path]) -> dict[str, list[str]]:
    """The wheel's METADATA headers, each as the list of its values."""
    with zipfile.ZipFile(built["wheel"]) as archive:
        text = archive.read(f"{PACKAGE}-{VERSION}.dist-info/METADATA").decode()
    headers = HeaderParser().parsestr(text)
    return {key: headers.get_all(key) or [] for key in set(headers.keys())}


def test_twine_accepts_both_archives_and_renders_the_readme(built: dict[str, Path]) -> None:
    done = _run([sys.executable, "-m", "twine", "check", "--strict", str(built["sdist"]), str(built["wheel"])])
    assert done.stdout.count("PASSED") == 2, done.stdout


def test_the_wheel_holds_only_the_package_and_its_metadata(built: dict[str, Path]) -> None:
    with zipfile.ZipFile(built["wheel"]) as archive:
        names = set(archive.namelist())
    dist_info = f"{PACKAGE}-{VERSION}.dist-info/"
    outside = sorted(n for n in names if not n.startswith((f"{PACKAGE}/", dist_info)))
    assert outside == [], f"the wheel ships files outside the package: {outside}"
    assert f"{dist_info}licenses/LICENSE" in names
    assert f"{dist_info}entry_points.txt" in names
    # Every file of the package is shipped: modules, py.typed and the emulator's data.
    missing = sorted(_tree_files(PACKAGE) - names)
    assert missing == [], f"the wheel lacks package files: {missing}"
    assert f"{PACKAGE}/py.typed" in names


def test_the_sdist_holds_the_package_tests_example_dags_and_licence(built: dict[str, Path]) -> None:
    top = f"{PACKAGE}-{VERSION}/"
    with tarfile.open(built["sdist"]) as archive:
        names = {name.removeprefix(top) for name in archive.getnames() if name.startswith(top)}
    for name in SDIST_TOP_FILES:
        assert name in names, f"the sdist lacks {name}"
    for folder in (PACKAGE, "tests", "example_dags"):
        missing = sorted(_tree_files(folder) - names)
        assert missing == [], f"the sdist lacks files under {folder}/: {missing}"
    assert "example_dags/example_aleph_winterize.py" in names
    assert "example_dags/sample_videos/street.mp4" in names
    leaked = sorted(n for n in names if n.startswith((".venv", "test-artifacts", ".git/")) or n.endswith(".pyc"))
    assert leaked == [], f"the sdist ships local files: {leaked}"


def test_published_metadata_names_the_licence_and_no_development_tool(wheel_metadata: dict[str, list[str]]) -> None:
    assert wheel_metadata["License-Expression"] == ["Apache-2.0"]
    assert wheel_metadata["License-File"] == ["LICENSE"]
    assert "Framework :: Apache Airflow :: 3" in wheel_metadata["Classifier"]
    requirements = [Requirement(line) for line in wheel_metadata["Requires-Dist"]]
    declared = {canonicalize_name(r.name) for r in requirements}
    assert declared >= {"apache-airflow", "httpx", "pendulum", "tenacity"}
    assert declared.isdisjoint(DEVELOPMENT_TOOLS), sorted(declared & DEVELOPMENT_TOOLS)
    # The extras users install: the emulator's web server, and the media libraries (fit_input, preview);
    # the development tools are groups.
    assert wheel_metadata["Provides-Extra"] == ["emulator", "media"]


def test_the_installed_wheel_is_a_provider_airflow_finds(built: dict[str, Path], tmp_path: Path) -> None:
    """A user's install: the wheel and Airflow (at the lock's versions) in a fresh venv, nothing else."""
    venv = tmp_path / "venv"
    uv = _uv()
    _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)])
    python = venv / "bin" / "python"
    _run([uv, "pip", "install", "--quiet", "--python", str(python), str(built["wheel"]), "--constraints", str(LOCK)])

    listed = json.loads(_run([uv, "pip", "list", "--python", str(python), "--format", "json"]).stdout)
    installed = {canonicalize_name(p["name"]): p["version"] for p in listed}
    assert installed["airflow-provider-aleph"] == VERSION
    assert "apache-airflow" in installed
    assert DEVELOPMENT_TOOLS.isdisjoint(installed), sorted(DEVELOPMENT_TOOLS & set(installed))

    # A writable Airflow home of its own; none of this test session's Airflow settings.
    home = tmp_path / "airflow-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIRTUAL_ENV", "PYTHON"))}
    env["AIRFLOW_HOME"] = str(home)
    airflow = [str(venv / "bin" / "airflow")]

    def cli_json(*args: str) -> list[dict[str, str]]:
        out = _run([*airflow, *args, "--output", "json"], env=env, cwd=tmp_path).stdout
        rows: list[dict[str, str]] = json.loads(out[out.index("[") :])
        return rows

    providers = {row["package_name"]: row for row in cli_json("providers", "list")}
    assert providers["airflow-provider-aleph"]["version"] == VERSION
    hooks = {row["connection_type"]: row for row in cli_json("providers", "hooks")}
    assert hooks["segmind"]["class"] == f"{PACKAGE}.hooks.segmind.SegmindHook"
    assert hooks["segmind"]["package_name"] == "airflow-provider-aleph"
    assert hooks["segmind"]["hook_name"] == "Segmind"
    # The installed package is the wheel's, not this tree's.
    where = _run([str(python), "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)"], env=env, cwd=tmp_path).stdout
    assert PurePosixPath(where.strip()).is_relative_to(PurePosixPath(str(venv))), where
