"""`emotune dashboard` in a real headless Chromium (Debian's, installed by `make browser`).

Driven with Playwright on the system's /usr/bin/chromium (no browser download): it waits for what
the page renders, collects console messages and page errors, takes screenshots and reloads, in one
API. Screenshots are kept under .emotune/artifacts/ of the project.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import optuna
import pytest

from emotune.search import _storage as st

ROOT = Path(__file__).resolve().parents[2]
EMOTUNE = str(Path(sys.executable).parent / "emotune")
ARTIFACTS = ROOT / ".emotune" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["embedded", "server"])
def storage(request, pg_url, monkeypatch):
    """(url, env of the dashboard command): the embedded server of a fresh EMOTUNE_HOME, or PostgreSQL."""
    if request.param == "server":
        yield pg_url, {**os.environ}, ["--storage", pg_url]
        return
    home = Path(tempfile.mkdtemp(prefix="et-dash-"))  # short: Unix-socket paths are limited
    monkeypatch.setenv("EMOTUNE_HOME", str(home))
    try:
        yield st.embedded_url(start=True), {**os.environ, "EMOTUNE_HOME": str(home)}, []
    finally:
        if st.embedded_status()["running"]:
            st.embedded_stop()
        shutil.rmtree(home, ignore_errors=True)


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise AssertionError(f"emotune dashboard exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the dashboard never answered at {url}")


def test_dashboard_in_chromium_lists_studies_and_shows_new_trials_on_reload(storage, request):
    from playwright.sync_api import sync_playwright

    url, env, args = storage
    kind = request.node.callspec.params["storage"]
    name = f"test-dash-{uuid.uuid4().hex[:8]}"
    st.ensure_schema(url)
    study = optuna.create_study(study_name=name, storage=st.normalize_url(url), direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=3)
    port = _free_port()
    dash = subprocess.Popen(
        [EMOTUNE, "dashboard", *args, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    problems: list[str] = []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        _wait_http(f"{base}/api/studies", dash)
        with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="et-chromium-") as profile:
            browser = pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=FLAGS
            )
            page = browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(f"{base}/dashboard")
            page.get_by_text(name).first.wait_for(timeout=60_000)
            page.screenshot(path=ARTIFACTS / f"dashboard-{kind}-studies.png", full_page=True)

            page.goto(f"{base}/dashboard/studies/{study._study_id}/trials")
            page.get_by_text("3 Trials").first.wait_for(timeout=60_000)
            assert page.get_by_text("Trial 2", exact=True).count() >= 1
            # A trial finished after the page loaded appears on reload.
            study.enqueue_trial({"x": 0.5})
            study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=1)
            page.reload()
            page.get_by_text("4 Trials").first.wait_for(timeout=60_000)
            assert page.get_by_text("Trial 3", exact=True).count() >= 1
            shot = ARTIFACTS / f"dashboard-{kind}-trials.png"
            page.screenshot(path=shot, full_page=True)
            browser.close()
    finally:
        dash.terminate()
        dash.wait(timeout=30)
        optuna.delete_study(study_name=name, storage=st.normalize_url(url))
    assert problems == [], problems
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
