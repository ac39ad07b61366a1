"""Talking to a quest server from Python or the CLI: submit a CSV, read the leaderboard."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from cnnlab.quest.fields import check_text, check_train_time

TIMEOUT_S = 60.0


class QuestServerError(ValueError):
    """The server refused a request (or could not be reached); the message is one line."""


def submit(
    server: str,
    token: str,
    csv_path: str | os.PathLike[str],
    *,
    model: str,
    train_time: float,
    code: str | None = None,
) -> dict[str, Any]:
    """POST the predictions CSV; the server's answer: id, public_score, submissions_left."""
    path = Path(csv_path)
    if not path.is_file():
        raise FileNotFoundError(f"No such predictions file: {path}")
    if path.stat().st_size == 0:
        raise ValueError(
            "the predictions file is empty: expected a header 'id,label' and one row per test "
            f"image, as `cnnlab evaluate --write-predictions` writes it. Received: "
            f"csv_path={str(path)!r}"
        )
    check_train_time(train_time)  # refused here too, before the upload
    check_text("model", model)
    if code:
        check_text("code", code)
    fields = {"model": model, "train_time": str(train_time)}
    if code:
        fields["code"] = code
    with path.open("rb") as file:
        return _request(
            "POST",
            server,
            "/api/submissions",
            headers={"Authorization": f"Bearer {token}"},
            data=fields,
            files={"file": (path.name, file, "text/csv")},
        )


def leaderboard(server: str) -> list[dict[str, Any]]:
    """The public leaderboard, best first."""
    return _request("GET", server, "/api/leaderboard")


def history(server: str, token: str) -> dict[str, Any]:
    """The calling team's own submissions."""
    return _request("GET", server, "/api/submissions", headers={"Authorization": f"Bearer {token}"})


def _request(method: str, server: str, route: str, **kwargs: Any) -> Any:
    url = server.rstrip("/") + route
    expected = f"server expects a URL like http://127.0.0.1:8000. Received: server={server!r}"
    if not url.startswith(("http://", "https://")):
        raise ValueError(expected)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise ValueError(f"{expected} ({error})") from None
    if not parsed.host:
        raise ValueError(f"{expected} (no host)")
    try:
        response = httpx.request(method, parsed, timeout=TIMEOUT_S, **kwargs)
    except httpx.HTTPError as error:
        raise QuestServerError(f"cannot reach {url}: {error}") from None
    if response.is_error:
        raise QuestServerError(f"{response.status_code} from {url}: {_detail(response)}")
    return response.json()


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail", response.text) if isinstance(body, dict) else response.text
    return " ".join(str(detail).split())[:500]
