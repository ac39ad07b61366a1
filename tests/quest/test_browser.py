"""A real browser on the leaderboard page: headless Chromium, driven by Playwright.

A uvicorn server runs in a background thread on 127.0.0.1 over a SQLite file; Debian's
``chromium`` (never a Playwright-downloaded browser) loads ``/`` and checks what a student sees:
the leaderboard table, the histogram of public scores, a fresh submission after a reload, and team
names that carry markup shown as text, never run. Skipped where ``/usr/bin/chromium`` or the
``playwright`` package is absent.
"""

from __future__ import annotations

import io
import shutil
import socket
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOT_COPY = Path("/tmp/questload-helper/page.png")
NUM_LABELS = 1000
NUM_CLASSES = 10
SCRIPT_NAMES = (
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned=2">',
)

import uvicorn  # noqa: E402
from playwright import sync_api  # noqa: E402  (the dev extra)

REQUIRES_CHROMIUM = pytest.mark.requires(
    not CHROMIUM.is_file(), "Debian's chromium (/usr/bin/chromium, apt install chromium)"
)

from cnnlab.quest import db as quest_db  # noqa: E402
from cnnlab.quest.server import create_app  # noqa: E402

pytestmark = [REQUIRES_CHROMIUM, pytest.mark.slow]


class Site:
    """The running server: its address, database and the labels it scores against."""

    def __init__(self, base_url: str, db_url: str, labels: np.ndarray):
        self.base_url = base_url
        self.db_url = db_url
        self.labels = labels

    def __repr__(self) -> str:
        return f"Site({self.base_url!r}, {self.db_url!r}, labels={len(self.labels)})"

    def submit(self, team_name: str, accuracy: float, model: str = "lenet-like") -> dict:
        """Register ``team_name`` and submit predictions that are right on about ``accuracy``."""
        import httpx

        token = quest_db.add_team(self.db_url, team_name)
        rng = np.random.default_rng(zlib.crc32(team_name.encode()))
        predicted = self.labels.copy()
        wrong = rng.random(len(predicted)) >= accuracy
        predicted[wrong] = (predicted[wrong] + 1) % NUM_CLASSES
        csv_text = "id,label\n" + "".join(f"{i},{y}\n" for i, y in enumerate(predicted))
        response = httpx.post(
            f"{self.base_url}/api/submissions",
            headers={"Authorization": f"Bearer {token}"},
            files={"file": ("predictions.csv", io.BytesIO(csv_text.encode()), "text/csv")},
            data={"model": model, "train_time": "12.5"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A leaderboard on 1,000 synthetic labels, served by uvicorn in a background thread."""
    folder = tmp_path_factory.mktemp("quest-browser")
    db_url = f"sqlite:///{folder / 'quest.db'}"
    labels = np.random.default_rng(0).integers(0, NUM_CLASSES, NUM_LABELS)
    quest_db.init_competition(
        db_url,
        data_name="synthetic",
        labels=labels.tolist(),
        num_classes=NUM_CLASSES,
        seed=0,
        daily_limit=100,
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(db_url), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the uvicorn server did not start within 10 s")
        time.sleep(0.02)
    result = Site(f"http://127.0.0.1:{port}", db_url, labels)
    for name, accuracy in (("Alpha", 0.91), ("Bravo", 0.85), ("Charlie", 0.62), ("Delta", 0.40)):
        result.submit(name, accuracy)
    yield result
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    yield context.new_page()
    context.close()


@pytest.fixture
def dialogs(page) -> list[str]:
    """The messages of every dialog (alert, confirm, prompt) the page tried to show."""
    shown: list[str] = []

    def dismiss(dialog) -> None:
        shown.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    return shown


def leaderboard_row(page, team_name: str):
    """The table row with a cell whose whole text is ``team_name``."""
    cell = page.get_by_role("cell", name=team_name, exact=True)
    return page.locator("#leaderboard tbody tr").filter(has=cell).first


def test_page_shows_the_leaderboard_table_and_the_score_histogram(site, page, tmp_path):
    response = page.goto(site.base_url + "/")
    assert response is not None and response.ok
    assert "text/html" in response.headers["content-type"]

    sync_api.expect(page.locator("#leaderboard")).to_be_visible()
    for name in ("Alpha", "Bravo", "Charlie", "Delta"):
        sync_api.expect(leaderboard_row(page, name)).to_be_visible()
    histogram = page.locator("svg#histogram")
    sync_api.expect(histogram).to_be_visible()
    bars = histogram.locator("rect")
    assert bars.count() >= 2, histogram.inner_html()
    heights = [float(bars.nth(i).get_attribute("height") or 0) for i in range(bars.count())]
    assert sum(h > 0 for h in heights) >= 2, heights  # four scores, at least two bins with bars

    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    SCREENSHOT_COPY.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tmp_path / "page.png", SCREENSHOT_COPY)
    assert (tmp_path / "page.png").stat().st_size > 0


def test_a_new_submission_appears_after_a_reload(site, page):
    page.goto(site.base_url + "/")
    sync_api.expect(page.locator("#leaderboard")).to_be_visible()
    assert leaderboard_row(page, "Echo").count() == 0

    result = site.submit("Echo", 0.77, model="resnet-ish")
    page.reload()
    row = leaderboard_row(page, "Echo")
    sync_api.expect(row).to_be_visible()
    sync_api.expect(row).to_contain_text(f"{result['public_score']:.5f}")
    sync_api.expect(row).to_contain_text("resnet-ish")


@pytest.mark.parametrize("team_name", SCRIPT_NAMES)
def test_a_team_name_with_markup_is_shown_as_text_and_never_runs(site, page, dialogs, team_name):
    site.submit(team_name, 0.5)
    page.goto(site.base_url + "/")
    page.wait_for_load_state("load")

    sync_api.expect(leaderboard_row(page, team_name)).to_be_visible()
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert dialogs == []
