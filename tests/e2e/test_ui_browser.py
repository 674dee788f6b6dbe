"""The Airflow UI in a real browser: Debian's Chromium, headless, driven by Playwright.

Playwright for Python comes from the project's pinned dependencies and drives the system's
``chromium`` (no browser download). Where it is missing the test skips and says how to install it
(``make browser``); with ``ALEPH_REQUIRE_BROWSER=1`` (set by ``.ci/run``) a missing browser fails
instead. Screenshots land in ``test-artifacts/`` (``ALEPH_E2E_ARTIFACTS``).
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from tests.e2e.conftest import ADMIN_PASSWORD, ARTIFACTS, JOB_LATENCY

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser, Page

    from tests.e2e.conftest import EmulatorProcess
    from tests.support.deployment import AirflowDeployment

CHROMIUM = os.environ.get("ALEPH_CHROMIUM", "/usr/bin/chromium")
#: As root on a machine without network: no sandbox, no GPU, no calls home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WINTERIZE_DAG = "example_aleph_winterize"
MISSING = (
    f"Debian's chromium is not installed ({CHROMIUM} not found): run `make browser` "
    "(apt-get install chromium) to run the UI test"
)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser's path, or a skip (a failure under ALEPH_REQUIRE_BROWSER=1) when it is missing.

    Session-scoped, so it is checked before the deployment starts.
    """
    if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        if os.environ.get("ALEPH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"ALEPH_REQUIRE_BROWSER=1 but {MISSING}")
        pytest.skip(MISSING)
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    """Headless Chromium for this module's tests.

    Module-scoped: Playwright's sync API runs an event loop of its own on this thread, which must be
    gone before the asyncio tests that follow.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: str, browser: Browser, deployment: AirflowDeployment) -> Iterator[Page]:
    """A page logged into the Airflow UI as ``admin``, through the login form."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(deployment.base_url)
    page.wait_for_url("**/auth/login**")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    try:
        yield page
    finally:
        context.close()


def screenshot(page: Page, name: str) -> None:
    """Save the page as ``test-artifacts/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True, animations="disabled")


def test_connection_form_for_segmind(page: Page, deployment: AirflowDeployment) -> None:
    """Adding a connection of type "Segmind" shows our labels for the key and the base URL."""
    page.goto(f"{deployment.base_url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("combobox").click()
    page.keyboard.type("Segmind")
    page.get_by_role("option", name="Segmind", exact=True).click()
    labels = dialog.locator("label")
    labels.filter(has_text="API key").wait_for()
    screenshot(page, "connection-form-segmind")
    dialog.get_by_text("Extra Fields", exact=True).click()
    labels.filter(has_text="Files API URL").wait_for()
    screenshot(page, "connection-form-segmind-extra-fields")
    texts = [text.strip() for text in labels.all_inner_texts()]
    for label in ("Base URL", "API key", "Files API URL", "Request budget per minute"):
        assert label in texts, texts
    # The fields Segmind has no use for are hidden.
    for hidden in ("Host", "Password", "Login", "Schema", "Port"):
        assert hidden not in texts, texts
    # The key is typed into a password field, never shown as it is typed.
    api_key = dialog.get_by_label("API key")
    assert api_key.get_attribute("type") == "password"


@pytest.fixture
def finished_edit(deployment: AirflowDeployment, e2e_emulator: EmulatorProcess) -> dict[str, Any]:
    """A run of the winterize example that has finished, its job shortened to two seconds."""
    e2e_emulator.configure(latency=2)
    try:
        deployment.wait_for_dag(WINTERIZE_DAG)
        # The example's video param admits web and bucket URIs only: the emulator serves a sample clip.
        video = f"{e2e_emulator.base_url}/samples/sample.mp4"
        run_id = deployment.trigger(WINTERIZE_DAG, {"video": video, "prompt": "make it winter", "seed": 42})
        assert deployment.wait_for_run(WINTERIZE_DAG, run_id, timeout=6 * JOB_LATENCY) == "success"
    finally:
        e2e_emulator.configure(latency=JOB_LATENCY)
    xcom = deployment.api(
        "GET",
        f"/dags/{WINTERIZE_DAG}/dagRuns/{quote(run_id)}/taskInstances/winterize/xcomEntries/return_value",
        params={"deserialize": True},
    )
    return {"run_id": run_id, **xcom["value"]}


def test_finished_task_links_to_its_output(
    page: Page, deployment: AirflowDeployment, finished_edit: dict[str, Any]
) -> None:
    """A finished Aleph task's page offers "Segmind output", and it points at the edited video."""
    run_id = finished_edit["run_id"]
    page.goto(f"{deployment.base_url}/dags/{WINTERIZE_DAG}/runs/{quote(run_id)}/tasks/winterize/details")
    link = page.get_by_role("link", name="Segmind output")
    link.wait_for()
    screenshot(page, "task-extra-link")
    href = link.get_attribute("href")
    assert href == finished_edit["output_url"]
    assert finished_edit["request_id"] in href
    video = page.request.get(href)
    assert video.ok
    assert video.headers["content-type"] == "video/mp4"
    assert video.body()[4:8] == b"ftyp"
    # Following the link opens the edited video itself.
    with page.context.expect_page() as opened:
        link.click()
    target = opened.value
    target.wait_for_load_state()
    assert target.url == href
    screenshot(target, "task-extra-link-target")
