"""The leaderboard page: plain HTML, an inline SVG histogram drawn here, no scripts, no CDN.

Every user-provided string (team names, models, code links) goes through ``html.escape``.
"""

from __future__ import annotations

from html import escape

import numpy as np

from cnnlab.runtime.formatting import format_si

HISTOGRAM_BINS = 20
_WIDTH, _HEIGHT, _MARGIN = 640, 240, 40

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 0.3em 0.6em; border-bottom: 1px solid #ddd; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
svg text { font-size: 11px; fill: #444; }
p.warning { background: #fff3cd; border: 1px solid #e0b000; padding: 0.6em 0.8em; }
"""


def render_page(info: dict, board: list[dict], scores: list[float], log: list[str]) -> str:
    """The whole page as one HTML string."""
    data = escape(info["data"])
    state = "private scores (final)" if info["revealed"] else "public scores"
    close = (
        f", closes {escape(info['close_at'])}" if info["close_at"] and not info["revealed"] else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cnnlab quest: {data}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>cnnlab quest: {data}</h1>
<p>Leaderboard by {state}; {info["test_count"]:,} test images, {info["daily_limit"]} submissions
per team per UTC day{close}.</p>
{_scoring_paragraph(info)}
<h2>Leaderboard</h2>
{_board_table(board, info["revealed"], models=info.get("submissions") == "model")}
<h2>All public scores</h2>
{histogram_svg(scores)}
<h2>Log</h2>
<pre id="log">{escape(chr(10).join(log)) or "no submissions yet"}</pre>
</body>
</html>
"""


def _scoring_paragraph(info: dict) -> str:
    """How the scores come about: a model quest's secret set and limits, or the warning that a
    CSV quest's labels are public."""
    text = info.get("test_set_description")
    if not text:
        return ""
    if info.get("labels_public"):
        return f'<p class="warning" id="scoring"><strong>Warning:</strong> {escape(text)}</p>'
    limits = info.get("limits")
    rules = ""
    if limits:
        rules = (
            f" Limits per model: {limits['max_model_mb']:g} MB, {limits['max_model_seconds']:g} s"
            f" and {limits['max_model_memory_mb']:,} MB of memory, {limits['model_threads']}"
            f" thread(s); inference time is the server's, per image in batches of"
            f" {limits['batch_size']}."
        )
    return f'<p id="scoring">{escape(text + rules)}</p>'


def _board_table(board: list[dict], revealed: bool, *, models: bool = False) -> str:
    if not board:
        return "<p>No submissions yet.</p>"
    extra = "<th>public</th>" if revealed else ""
    measured = "<th>inference (ms/image)</th><th>model size</th>" if models else ""
    rows = []
    for entry in board:
        public = f'<td class="num">{entry["public_score"]:.5f}</td>' if revealed else ""
        server = _measured_cells(entry) if models else ""
        code = _code_cell(entry.get("code"))
        rows.append(
            f'<tr><td class="num">{entry["rank"]}</td><td>{escape(entry["team"])}</td>'
            f'<td class="num">{entry["score"]:.5f}</td>{public}<td>{escape(entry["model"])}</td>'
            f'<td class="num">{entry["train_time"]:.1f}</td>{server}{code}'
            f'<td class="num">{entry["submissions"]}</td>'
            f"<td>{escape(entry['created_at'][:16].replace('T', ' '))}</td></tr>"
        )
    return (
        '<table id="leaderboard"><thead><tr><th>#</th><th>team</th><th>score</th>'
        f"{extra}<th>model</th><th>train time (s)</th>{measured}<th>code</th><th>submissions</th>"
        "<th>submitted (UTC)</th></tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
    )


def _measured_cells(entry: dict) -> str:
    """The server's own measurements of a submitted model (empty for a CSV)."""
    if entry.get("model_bytes") is None:
        return "<td></td><td></td>"
    return (
        f'<td class="num">{entry["inference_ms"]:.3f}</td>'
        f'<td class="num">{format_si(entry["model_bytes"])}B</td>'
    )


def _code_cell(code: str | None) -> str:
    """A link only for http(s) URLs (never ``javascript:``); anything else shown as text."""
    if not code:
        return "<td></td>"
    if code.startswith(("https://", "http://")):
        return f'<td><a href="{escape(code)}" rel="nofollow noopener">{escape(code)}</a></td>'
    return f"<td>{escape(code)}</td>"


def histogram_svg(scores: list[float]) -> str:
    """Counts of scores in equal-width bins between the lowest and highest, as inline SVG."""
    if not scores:
        return "<p>No scores yet.</p>"
    values = np.asarray(scores, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-3:  # one value (or nearly): a narrow window around it, inside [0, 1]
        middle = (low + high) / 2
        low, high = max(middle - 0.005, 0.0), min(middle + 0.005, 1.0)
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS, range=(low, high))
    plot_w, plot_h = _WIDTH - 2 * _MARGIN, _HEIGHT - 2 * _MARGIN
    bar_w = plot_w / HISTOGRAM_BINS
    top = max(int(counts.max()), 1)
    parts = [
        f'<svg id="histogram" xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" '
        f'height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="histogram of {values.size} public scores">',
        f'<line x1="{_MARGIN}" y1="{_MARGIN + plot_h}" x2="{_MARGIN + plot_w}" '
        f'y2="{_MARGIN + plot_h}" stroke="#444"/>',
    ]
    for i, count in enumerate(counts):
        height = plot_h * count / top
        x = _MARGIN + i * bar_w
        y = _MARGIN + plot_h - height
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w - 1:.1f}" height="{height:.1f}" '
            f'fill="#20beff"><title>{edges[i]:.4f} to {edges[i + 1]:.4f}: {count}</title></rect>'
        )
    for edge in (edges[0], edges[len(edges) // 2], edges[-1]):
        x = _MARGIN + plot_w * (edge - low) / (high - low)
        parts.append(
            f'<text x="{x:.1f}" y="{_HEIGHT - _MARGIN / 2:.1f}" text-anchor="middle">'
            f"{edge:.4f}</text>"
        )
    parts.append(f'<text x="{_MARGIN}" y="{_MARGIN - 8}">count (max {top})</text>')
    parts.append("</svg>")
    return "\n".join(parts)
