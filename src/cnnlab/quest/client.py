"""Talking to a quest server from Python or the CLI: submit a CSV or an exported model, read the
leaderboard."""

from __future__ import annotations

import json
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


def submit_model(
    server: str,
    token: str,
    export_dir: str | os.PathLike[str],
    *,
    train_time: float,
    model: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """POST an export folder's ONNX model and its model.json to a model quest, which runs it on
    its secret test set; the server's answer: id, public_score, inference_ms, model_bytes,
    submissions_left. ``model`` describes it (default: the export's model name and precision).
    """
    file, manifest = read_export(export_dir)
    check_train_time(train_time)
    for name, text in (("model", model), ("code", code)):
        if text:
            check_text(name, text)
    info = _request("GET", server, "/api/competition")
    limits = info.get("limits") or {}
    if info.get("submissions") != "model":
        raise QuestServerError(
            f"the quest at {server} scores predictions, not models: submit a CSV "
            "(cnnlab evaluate RUN --write-predictions FILE, then quest submit FILE)"
        )
    size = file.stat().st_size
    if size > limits["max_model_mb"] * 1e6:
        raise ValueError(
            f"the model file {file} is {size / 1e6:.1f} MB; the quest at {server} accepts models "
            f"up to {limits['max_model_mb']:g} MB: a smaller model, or an int8 export "
            "(cnnlab export RUN --format onnx --int8)"
        )
    fields = {"train_time": str(train_time)}
    fields.update({name: text for name, text in (("model", model), ("code", code)) if text})
    # the answer comes once the model has run: allow its time limit twice (a queue, then the run)
    timeout = httpx.Timeout(TIMEOUT_S, read=2 * limits["max_model_seconds"] + TIMEOUT_S)
    with file.open("rb") as handle:
        return _request(
            "POST",
            server,
            "/api/models",
            headers={"Authorization": f"Bearer {token}"},
            data=fields,
            files={
                "file": (file.name, handle, "application/octet-stream"),
                "manifest": ("model.json", manifest, "application/json"),
            },
            timeout=timeout,
        )


def read_export(export_dir: str | os.PathLike[str]) -> tuple[Path, bytes]:
    """(the ONNX file model.json names as the default precision, model.json's bytes) of an
    export folder written by ``cnnlab export RUN --format onnx``."""
    folder = Path(export_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"No such export folder: {folder}")
    manifest_path = folder / "model.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"No model.json in {folder}: expected the folder that `cnnlab export RUN --format "
            "onnx --out DIR` wrote"
        )
    data = manifest_path.read_bytes()
    try:
        manifest = json.loads(data)
        runtime = manifest["runtime"]
        name = manifest["files"][manifest["precision"]]["file"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(
            f"{manifest_path} is not a cnnlab export description: expected the model.json "
            "that `cnnlab export` writes"
        ) from None
    if runtime != "onnx":
        raise ValueError(
            f"{folder} holds a {runtime} export; the quest server runs ONNX models: export "
            "with `cnnlab export RUN --format onnx`"
        )
    file = folder / str(name)
    if not file.is_file():
        raise FileNotFoundError(f"{manifest_path} names {name!r}, but {folder} has no such file")
    return file, data


def leaderboard(server: str) -> list[dict[str, Any]]:
    """The public leaderboard, best first."""
    return _request("GET", server, "/api/leaderboard")


def history(server: str, token: str) -> dict[str, Any]:
    """The calling team's own submissions."""
    return _request("GET", server, "/api/submissions", headers={"Authorization": f"Bearer {token}"})


def _request(
    method: str,
    server: str,
    route: str,
    *,
    timeout: float | httpx.Timeout = TIMEOUT_S,
    **kwargs: Any,
) -> Any:
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
        response = httpx.request(method, parsed, timeout=timeout, **kwargs)
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
