"""The page in a real browser: Debian's chromium driven by Playwright, over a trained LeNet-like.

A uvicorn server runs in a background thread on 127.0.0.1. The tests draw with mouse events,
pick a test image, click feature-map cells, step the slide mode and upload files, and compare
what the page shows with the model computed here in Python. The per-update latency measured in
the browser is printed and written to /tmp/cnnlab-view/latency.json (never asserted); the
screenshots go to /tmp/cnnlab-view/. Skipped where /usr/bin/chromium or playwright is absent.
"""

from __future__ import annotations

import io
import json
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
OUTPUT = Path("/tmp/cnnlab-view")

import uvicorn  # noqa: E402
from playwright import sync_api  # noqa: E402  (the dev extra)

REQUIRES_CHROMIUM = pytest.mark.requires(
    not CHROMIUM.is_file(), "Debian's chromium (/usr/bin/chromium, apt install chromium)"
)

from cnnlab.view.server import bind, create_app  # noqa: E402

pytestmark = [REQUIRES_CHROMIUM, pytest.mark.slow]
expect = sync_api.expect


@pytest.fixture(scope="module")
def base_url(session):
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(session), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the uvicorn server did not start within 30 s")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
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
def page(browser, base_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(base_url + "/")
    expect(page.locator("#layer-0 canvas.values")).to_have_count(6)  # the first maps are drawn
    settle(page)
    yield page
    context.close()
    assert errors == []


def settle(page) -> None:
    """Wait until no prediction or activations request is in flight."""
    page.wait_for_function("window.cnnlabView.idle()")


def shown_top(page) -> list[tuple[str, float]]:
    rows = page.locator("#bars .bar-row")
    return [
        (
            rows.nth(i).get_attribute("data-class"),
            float(rows.nth(i).locator(".pct").inner_text()[:-1]),
        )
        for i in range(rows.count())
    ]


def page_pixels(page) -> bytes:
    return bytes(page.evaluate("Array.from(window.cnnlabView.pixels)"))


def python_top(session, pixels: bytes) -> list[tuple[str, float]]:
    return [(name, round(100 * p, 1)) for p, name in session.predict(pixels)]


def draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Strokes in canvas fractions (0..1), each pressed, moved through its points, released."""
    box = page.locator("#draw").bounding_box()

    def at(point):
        return box["x"] + point[0] * box["width"], box["y"] + point[1] * box["height"]

    for stroke in strokes:
        page.mouse.move(*at(stroke[0]))
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*at(point), steps=8)
        page.mouse.up()
    settle(page)


def test_drawing_changes_the_prediction_and_the_bars_are_the_models(page, session):
    page.click("#clear")
    settle(page)
    blank = shown_top(page)
    assert page_pixels(page) == bytes(64)
    page.evaluate("for (const k of ['updateMs', 'inputMs', 'serverMs']) window.cnnlabView[k] = []")

    zero = [(0.5 + 0.3 * np.sin(t), 0.5 - 0.38 * np.cos(t)) for t in np.linspace(0, 6.3, 12)]
    draw(page, [zero])
    drawn = shown_top(page)
    assert drawn != blank
    assert drawn == python_top(session, page_pixels(page))

    one = [(0.5, 0.1), (0.52, 0.5), (0.5, 0.9)]
    page.click("#clear")
    draw(page, [one])
    assert shown_top(page) == python_top(session, page_pixels(page))
    assert shown_top(page) != drawn

    update_ms = page.evaluate("window.cnnlabView.updateMs")
    input_ms = page.evaluate("window.cnnlabView.inputMs")
    server_ms = page.evaluate("window.cnnlabView.serverMs")
    assert len(update_ms) >= 4  # the bars followed the strokes, not only their ends
    report = {
        "updates": len(update_ms),
        "update_ms_median": statistics.median(update_ms),
        "update_ms_p90": sorted(update_ms)[int(0.9 * (len(update_ms) - 1))],
        "input_to_bars_ms_median": statistics.median(input_ms),
        "server_ms_median": statistics.median(server_ms),
        "what": "lenet-like on 8x8 digits; request sent -> bars drawn, and the oldest input "
        "event not yet shown -> bars drawn; headless chromium and uvicorn on this machine",
    }
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "latency.json").write_text(json.dumps(report, indent=2))
    print(f"\nper-update latency in the browser: {report}")
    page.screenshot(path=str(OUTPUT / "drawn.png"), full_page=True)


def click_cell(page, layer: int, channel: int, row: int, col: int, size: int) -> None:
    canvas = page.locator(f"#layer-{layer} canvas.values[data-channel='{channel}']")
    box = canvas.bounding_box()
    canvas.click(
        position={"x": (col + 0.5) * box["width"] / size, "y": (row + 0.5) * box["height"] / size}
    )


@pytest.mark.parametrize(
    ("layer", "cell", "size"),
    [(0, (2, 17, 12), 30), (1, (3, 7, 6), 15), (2, (11, 6, 4), 13), (3, (9, 2, 3), 6)],
)
def test_a_clicked_cell_shows_arithmetic_that_sums_to_the_models_activation(
    page, session, layer, cell, size
):
    thumb = page.locator(".thumb[data-index='2']")
    thumb.click()
    settle(page)
    pixels = page_pixels(page)
    assert pixels == session.dataset.test_images[2].numpy().tobytes()
    expect(page.locator("#truth")).to_contain_text(thumb.get_attribute("data-label"))

    channel, row, col = cell
    click_cell(page, layer, channel, row, col, size)
    expect(page.locator("#explain-title")).to_contain_text(f"map {channel}, cell ({row}, {col})")
    record = session.forward(pixels)[layer]
    before = float(record.before[channel, row, col])
    shown_sum = float(page.locator("#explain-sum").inner_text())
    assert shown_sum == pytest.approx(before, rel=1e-5, abs=1e-6)
    assert float(page.locator("#explain-model").inner_text()) == pytest.approx(
        before, rel=1e-5, abs=1e-6
    )
    if record.after is not None:
        after = float(record.after[channel, row, col])
        shown = float(page.locator("#explain-activated").inner_text())
        assert shown == pytest.approx(after, rel=1e-5, abs=1e-6)
    expect(page.locator("#explain-verdict")).to_contain_text("equal to float tolerance")
    equation = page.locator("#explain-equation").inner_text()
    assert equation.splitlines()[-1 if record.after is None else -2].endswith(
        page.locator("#explain-sum").inner_text()
    )
    if layer == 0:
        page.screenshot(path=str(OUTPUT / "cell.png"), full_page=True)


def test_slide_mode_reproduces_the_lectures_examples_cell_by_cell(page):
    page.click("#tab-slide")
    result = page.locator("#slide-result")
    expect(result).to_have_text("114")
    page.click("#slide-next")
    expect(result).to_have_text("328")  # 5*113 - (0 + 60 + 56 + 121)
    expect(page.locator("#slide-at")).to_contain_text("cell (0, 1) of 5\u00d75")
    page.click("#slide-prev")
    expect(result).to_have_text("114")
    page.select_option("#slide-example", "slide-rgb")
    expect(result).to_have_text("-25")
    expect(page.locator("#slide-equation")).to_contain_text("308 - 498 + 164 + 1 = -25")
    page.screenshot(path=str(OUTPUT / "slide.png"), full_page=True)
    page.select_option("#slide-example", "slide-pool-max")
    expect(result).to_have_text("100")
    page.select_option("#slide-example", "slide-pool-avg")
    expect(result).to_have_text("36.5")
    page.fill("#slide-padding", "2")
    page.dispatch_event("#slide-padding", "change")
    expect(page.locator("#slide-message")).to_contain_text(
        "padding must be at most half the pool size"
    )
    page.select_option("#slide-example", "slide-2d")
    expect(page.locator("#slide-at")).to_contain_text("of 5\u00d75")  # the example is in
    expect(result).to_have_text("114")
    page.fill("#slide-stride", "2")
    page.dispatch_event("#slide-stride", "change")
    expect(page.locator("#slide-at")).to_contain_text("of 3\u00d73")  # the new grid, then step
    page.click("#slide-next")
    expect(page.locator("#slide-at")).to_contain_text("of 3\u00d73")
    expect(result).to_have_text(str(5 * 56 - (0 + 113 + 139 + 54)))  # window at (0, 2), by hand


# The page's fetch, with the first /api/slide answer held back 400 ms: two requests in flight,
# answered out of order, as a busy server or network answers them.
SLOW_FIRST_SLIDE = """() => {
  const real = window.fetch;
  let calls = 0;
  window.slideAnswers = 0;
  window.fetch = async (path, init) => {
    const first = path === "/api/slide" && calls++ === 0;
    const response = await real(path, init);
    if (first) await new Promise((done) => setTimeout(done, 400));
    if (path === "/api/slide") window.slideAnswers += 1;
    return response;
  };
}"""


def test_slide_mode_draws_the_newest_request_when_answers_overtake(page):
    page.click("#tab-slide")
    result = page.locator("#slide-result")
    expect(result).to_have_text("114")
    page.evaluate(SLOW_FIRST_SLIDE)
    page.dispatch_event("#slide-stride", "change")  # asks for cell (0, 0), answered last
    page.click("#slide-next")  # asks for cell (0, 1), answered first
    page.wait_for_function("window.slideAnswers === 2")
    expect(page.locator("#slide-at")).to_contain_text("cell (0, 1) of 5\u00d75")
    expect(result).to_have_text("328")


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_uploads_are_predicted_and_oversize_or_non_images_refused(page, session):
    picture = np.zeros((64, 64), dtype=np.uint8)
    picture[10:54, 28:36] = 255
    page.set_input_files(
        "#upload", files=[{"name": "bar.png", "mimeType": "image/png", "buffer": png(picture)}]
    )
    expect(page.locator("#message")).to_have_text("")
    settle(page)
    assert shown_top(page) == python_top(session, page_pixels(page))
    assert page_pixels(page) != bytes(64)

    page.set_input_files(
        "#upload", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"no picture"}]
    )
    expect(page.locator("#message")).to_have_text(
        "notes.txt is not an image Pillow can read (expected PNG, JPEG, BMP, ...)"
    )
    big = bytes(6 * 2**20)  # over the default 5 MiB
    page.set_input_files(
        "#upload", files=[{"name": "huge.png", "mimeType": "image/png", "buffer": big}]
    )
    expect(page.locator("#message")).to_have_text(
        "huge.png is too large: uploads are limited to 5,242,880 bytes (5.0 MiB); "
        "expected a smaller image"
    )
