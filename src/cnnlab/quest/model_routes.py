"""``POST /api/models``: a team submits an exported ONNX model, and the server scores it.

Multipart fields: ``file`` (the ONNX file), ``manifest`` (its ``model.json``), ``train_time``
(seconds, the team's own figure), and optionally ``model`` (a description; default the export's
model name and precision) and ``code``.

The order of the checks is the order of their cost, and nothing before the run's result is
stored uses a submission: the upload's size, ``model.json`` against the quest's images and
classes, the day's quota (read, so that a team out of submissions does not spend the server's
time), one model per team at a time, a free slot (``ModelLimits.parallel_runs``; a request waits
up to ``max_model_seconds`` for one, without holding a thread), then the run
(``cnnlab.quest.models.run_model``). Only a model that ran is recorded, with the quota checked
again in the same transaction as the insert. Under ``quest serve --workers N`` the slots and the
one-model-per-team rule are each worker's (N times ``parallel_runs`` models may run at once);
the daily limit stays exact, since the database counts it.

(No ``from __future__ import annotations`` here: FastAPI reads the route's ``Depends(team)``
from the annotation at run time, and ``team`` is a local name.)
"""

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.datastructures import UploadFile

from cnnlab.quest import board
from cnnlab.quest.fields import check_train_time
from cnnlab.quest.models import (
    MAX_MANIFEST_BYTES,
    ModelRefused,
    check_model_size,
    read_submitted_manifest,
    run_model,
)
from cnnlab.quest.scoring import score
from cnnlab.quest.secret import QuestSettings
from cnnlab.quest.server import _text_field, board_refusals, read_limited_body
from cnnlab.quest.tokens import Principal

if TYPE_CHECKING:  # the secret images are a tensor; torch is imported by the model quest only
    import torch

FORM_OVERHEAD_BYTES = 64_000  # multipart boundaries and the text fields


def add_model_routes(
    app: FastAPI,
    *,
    engine: Engine,
    team: Callable[..., Principal],
    settings: QuestSettings,
    images: "torch.Tensor | None",
    labels: np.ndarray,
    private: np.ndarray,
    now: Callable[[], datetime],
    board_changed: Callable[[], None],
) -> None:
    """Add ``POST /api/models`` to ``app`` (``team``: the dependency that checks a team token;
    ``images``: the secret images, None for a CSV quest, whose route answers 409)."""
    limits = settings.limits
    slots = asyncio.Semaphore(limits.parallel_runs) if limits else None
    scoring: set[int] = set()  # teams whose model is being scored (the event loop's thread only)

    @app.post("/api/models", status_code=201)
    async def submit_model(
        request: Request, who: Annotated[Principal, Depends(team)]
    ) -> JSONResponse:
        if limits is None or images is None or slots is None:
            raise HTTPException(
                409,
                "this quest scores predictions CSV files, not models: submit the CSV "
                "(cnnlab quest submit PREDICTIONS_CSV)",
            )
        limit = limits.max_model_bytes + MAX_MANIFEST_BYTES + FORM_OVERHEAD_BYTES
        try:
            body = await read_limited_body(request, limit)
        except HTTPException as error:
            if error.status_code == 413:
                raise HTTPException(
                    413,
                    f"model refused: the upload is larger than this quest's limit of "
                    f"{limits.max_model_mb:g} MB per model",
                ) from None
            raise
        fields = await parse_model_form(request, body)
        try:
            submitted = read_submitted_manifest(
                fields["manifest"], image_shape=settings.image_shape, classes=settings.classes
            )
            check_model_size(len(fields["data"]), limits)
        except ModelRefused as error:
            raise HTTPException(error.status, f"model refused: {error}") from None
        await run_in_threadpool(_check_quota, engine, who, now())
        if who.team_id in scoring:
            raise HTTPException(
                429,
                f"a model of team {who.team_name!r} is being scored: wait for its result "
                "(this request did not use a submission)",
            )
        scoring.add(who.team_id)
        try:
            try:
                await asyncio.wait_for(slots.acquire(), timeout=limits.max_model_seconds)
            except asyncio.TimeoutError:
                raise HTTPException(
                    503,
                    "the server is busy scoring other teams' models: try again in a minute "
                    "(this request did not use a submission)",
                ) from None
            try:
                run = await run_in_threadpool(
                    run_model,
                    fields["data"],
                    submitted,
                    images,
                    limits,
                    num_classes=len(settings.classes),
                )
            except ModelRefused as error:
                raise HTTPException(error.status, f"model refused: {error}") from None
            finally:
                slots.release()
        finally:
            scoring.discard(who.team_id)
        scores = score(run.predictions, labels, private)
        with board_refusals():
            recorded = await run_in_threadpool(
                board.record_submission,
                engine,
                team_id=who.team_id,
                team_name=who.team_name,
                scores=scores,
                model=fields["model"] or submitted.description,
                train_time=fields["train_time"],
                code=fields["code"],
                now=now(),
                model_run={
                    "model_bytes": run.model_bytes,
                    "model_sha256": run.sha256,
                    "inference_ms": run.inference_ms,
                    "batch_size": run.batch_size,
                    "threads": run.threads,
                },
            )
        board_changed()
        return JSONResponse(
            {
                "id": recorded.id,
                "team": who.team_name,
                "model": fields["model"] or submitted.description,
                "public_score": recorded.public_score,
                "images": int(run.predictions.size),
                "inference_ms": run.inference_ms,
                "model_bytes": run.model_bytes,
                "batch_size": run.batch_size,
                "threads": run.threads,
                "submissions_left": recorded.submissions_left,
                "created_at": recorded.created_at.isoformat(),
            },
            status_code=201,
        )


def _check_quota(engine: Engine, who: Principal, moment: datetime) -> None:
    with engine.connect() as connection, board_refusals():
        board.check_quota(connection, team_id=who.team_id, team_name=who.team_name, now=moment)


async def parse_model_form(request: Request, body: bytes) -> dict[str, Any]:
    """The multipart fields, checked: ``data`` (the model's bytes), ``manifest`` (model.json's
    bytes), model (may be empty), train_time, code."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(
            422, "expected a multipart/form-data body with fields file, manifest, train_time"
        )

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=2, max_fields=10)
    try:
        upload, manifest = form.get("file"), form.get("manifest")
        if not isinstance(upload, UploadFile):
            raise HTTPException(422, "file: missing; attach the ONNX model as the field 'file'")
        if manifest is None:
            raise HTTPException(
                422, "manifest: missing; attach the export's model.json as the field 'manifest'"
            )
        data = await upload.read()
        manifest_bytes = (
            await manifest.read() if isinstance(manifest, UploadFile) else manifest.encode()
        )
        model = _text_field(form.get("model"), "model", required=False)
        code = _text_field(form.get("code"), "code", required=False) or None
        train_time_text = _text_field(form.get("train_time"), "train_time", required=True)
    finally:
        await form.close()
    try:
        train_time = check_train_time(float(train_time_text))
    except ValueError:
        raise HTTPException(
            422,
            f"train_time must be a number of seconds from 0 to a year. Received: "
            f"{train_time_text!r}",
        ) from None
    return {
        "data": data,
        "manifest": manifest_bytes,
        "model": model,
        "train_time": train_time,
        "code": code,
    }
