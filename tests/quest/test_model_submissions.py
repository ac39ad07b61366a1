"""Model quests: teams submit exported ONNX models, which the server runs on a secret test set.

The public labels are no answer (a CSV is not even accepted); an exported model's score is what
running the same export on the same secret images gives here; a model over a limit, or with a
wrong input or output, is refused in one line without using a submission; and a course session
runs from the CLI. Models are tiny: a LeNet-like trained two epochs on the offline digits, and
graphs built with ``onnx.helper``.
"""

import io
import json

import numpy as np
import onnx  # the dev extra installs onnx, onnxruntime (the server's) and onnxscript (export's)
import onnxruntime  # noqa: F401
import onnxscript  # noqa: F401
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper
from rich.console import Console
from typer.testing import CliRunner

import cnnlab
from cnnlab.cli.quest import leaderboard_table
from cnnlab.quest.db import (
    add_team,
    init_competition,
    load_answer_key,
    load_competition,
    open_engine,
    reveal,
)
from cnnlab.quest.models import ModelLimits
from cnnlab.quest.scoring import score
from cnnlab.quest.secret import draw_test_set, load_secret_images, load_settings, settings_row
from cnnlab.quest.server import create_app

DIGITS = [str(d) for d in range(10)]
DAILY_LIMIT = 5


@pytest.fixture(scope="module")
def digits():
    return cnnlab.load_dataset("digits")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """What a team submits: `cnnlab export RUN --format onnx` of a LeNet-like trained briefly."""
    from cnnlab.deploy import ExportConfig, export_model
    from cnnlab.train import default_config

    folder = tmp_path_factory.mktemp("team")
    run = folder / "run"
    cnnlab.train(default_config("lenet-like", "digits", epochs=2, out=str(run), device="cpu"))
    return export_model(ExportConfig(str(run), out=str(folder / "export"))).folder


def make_model_quest(db_url: str, digits, **limits) -> str:
    """A model quest on digits (secret perturbed set, seed fixed); the organiser token."""
    test_set = draw_test_set(digits, submissions="model", seed=20251126)
    return init_competition(
        db_url,
        data_name="digits",
        labels=test_set.labels.numpy(),
        num_classes=10,
        daily_limit=DAILY_LIMIT,
        settings=settings_row(test_set, "model", ModelLimits(**limits)),
    )


def secret_set(db_url: str):
    """(images, labels, private mask) as the server keeps them."""
    with open_engine(db_url) as engine, engine.connect() as connection:
        settings = load_settings(connection, load_competition(connection))
        labels, private = load_answer_key(connection)
        return load_secret_images(connection, settings), labels, private


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def model_upload(token: str, model: bytes, manifest: bytes, **fields) -> dict:
    return {
        "headers": bearer(token),
        "files": {"file": ("model.onnx", model), "manifest": ("model.json", manifest)},
        "data": {"train_time": "42.5", **fields},
    }


def export_upload(token: str, folder, **fields) -> dict:
    return model_upload(
        token, (folder / "model.onnx").read_bytes(), (folder / "model.json").read_bytes(), **fields
    )


def quota_left(client: TestClient, token: str) -> int:
    answer = client.get("/api/submissions", headers=bearer(token)).json()
    return answer["submissions_left"] if not answer["submissions"] else -1


# --------------------------------------------------------------------- hand-built ONNX models


def onnx_bytes(nodes, initializers, input_shape=(1, 8, 8), classes=10, batch="N") -> bytes:
    given = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, *input_shape])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])
    graph = helper.make_graph(nodes, "model", [given], [logits], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def linear_model(input_shape=(1, 8, 8), classes=10, extra=(), extra_init=(), batch="N") -> bytes:
    """logits = flatten(input) @ W (W seeded): an honest, if poor, classifier."""
    weights = np.random.default_rng(0).normal(size=(int(np.prod(input_shape)), classes))
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["linear" if extra else "logits"]),
        *extra,
    ]
    w = numpy_helper.from_array(weights.astype(np.float32), "w")
    return onnx_bytes(nodes, [w, *extra_init], input_shape, classes, batch)


def burdened_model(side: int, matmuls: int) -> bytes:
    """The linear model plus 0 * sum(B @ B @ ...), B a side x side matrix that depends on the
    input (so ONNX Runtime cannot fold it away): as slow or as large as asked."""
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=0),
        helper.make_node(
            "ConstantOfShape",
            ["side"],
            ["ones"],
            value=numpy_helper.from_array(np.ones(1, np.float32)),
        ),
        helper.make_node("Add", ["ones", "mean"], ["b0"]),
    ]
    for i in range(matmuls):
        nodes.append(helper.make_node("MatMul", [f"b{i}", "b0"], [f"b{i + 1}"]))
    nodes += [
        helper.make_node("ReduceSum", [f"b{matmuls}"], ["sum"], keepdims=0),
        helper.make_node("Mul", ["sum", "zero"], ["nothing"]),
        helper.make_node("Add", ["linear", "nothing"], ["logits"]),
    ]
    constants = [
        numpy_helper.from_array(np.array([side, side], np.int64), "side"),
        numpy_helper.from_array(np.zeros((), np.float32), "zero"),
    ]
    return linear_model(extra=nodes, extra_init=constants)


def external_data_model(location: str) -> bytes:
    """The linear model with its weights "stored" in another file: read from the server's disk
    if ONNX Runtime followed the path (the database, say)."""
    model = onnx.load_from_string(linear_model())
    weights = model.graph.initializer[0]
    weights.ClearField("raw_data")
    weights.ClearField("float_data")
    weights.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("length", str(64 * 10 * 4))):
        entry = weights.external_data.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def manifest(**changes) -> bytes:
    """A model.json as cnnlab export writes it, for a model of digits' images."""
    data = {
        "format": "cnnlab-export",
        "version": 1,
        "runtime": "onnx",
        "precision": "fp32",
        "files": {"fp32": {"file": "model.onnx"}},
        "model": {"name": "linear", "input_shape": [1, 8, 8]},
        "preprocessing": {"data_shape": [1, 8, 8], "mean": [0.3], "std": [0.4]},
        "classes": DIGITS,
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data[section][field] = value
        else:
            data[section] = value
    return json.dumps(data).encode()


def write_export(folder, model: bytes, description: bytes):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(model)
    (folder / "model.json").write_bytes(description)
    return folder


# ------------------------------------------------------------------------------------ tests


def test_a_csv_of_the_public_labels_is_not_accepted(db_url, digits, kit):
    """The attack of the issue: fashion-mnist's t10k labels scored 1.00000. Here the perfect
    CSV of the public labels is refused outright, and no submission is used."""
    make_model_quest(db_url, digits)
    token = add_team(db_url, "attackers")
    perfect = kit.to_csv(digits.test_labels.numpy())
    with TestClient(create_app(db_url)) as client:
        answer = client.post("/api/submissions", **kit.submission(token, perfect))
        assert answer.status_code == 409
        assert "scores models, not predictions" in answer.json()["detail"]
        assert quota_left(client, token) == DAILY_LIMIT
        assert client.get("/api/leaderboard").json() == []


def test_the_public_labels_do_not_answer_the_secret_set(db_url, digits):
    """Even as predictions for the secret ids, the public labels score at chance; and no secret
    image is a public test image bit for bit (an exact lookup finds nothing)."""
    make_model_quest(db_url, digits)
    images, labels, private = secret_set(db_url)
    public_guess = score(digits.test_labels.numpy(), labels, private)
    assert max(public_guess.public, public_guess.private) < 0.25  # 10 classes: chance is 0.1
    public = {image.tobytes() for image in digits.test_images.numpy()}
    assert not any(image.tobytes() in public for image in images.numpy())
    assert sorted(labels.tolist()) == sorted(digits.test_labels.tolist())  # each image once


def test_an_export_scores_on_the_server_as_it_does_here(db_url, digits, export_dir):
    """The server's score is the same export run here (load_export, 1 thread, batches of 64)
    on the same secret images; it is far above chance, so the server's preprocessing is right.
    """
    from cnnlab.deploy import load_export

    make_model_quest(db_url, digits)
    token = add_team(db_url, "lenet")
    with TestClient(create_app(db_url, board_refresh_seconds=0)) as client:
        answer = client.post("/api/models", **export_upload(token, export_dir))
        assert answer.status_code == 201, answer.text
        result = answer.json()
        images, labels, private = secret_set(db_url)
        local = load_export(export_dir, threads=1).logits(images, batch_size=64).argmax(axis=1)
        expected = score(local, labels, private)
        assert result["public_score"] == expected.public
        assert result["public_score"] > 0.3
        assert result["images"] == 360 and result["submissions_left"] == DAILY_LIMIT - 1
        assert result["model"] == "lenet-like (onnx fp32)"
        assert result["model_bytes"] == (export_dir / "model.onnx").stat().st_size
        assert result["inference_ms"] > 0 and result["threads"] == 1
        page = client.get("/").text
        assert "inference (ms/image)" in page and "model size" in page
        assert "secret test images" in page and "cannot be trusted" not in page
        reveal(db_url)
        (entry,) = client.get("/api/leaderboard").json()
    assert entry["private_score"] == expected.private
    assert entry["model_bytes"] == result["model_bytes"]
    assert entry["inference_ms"] == result["inference_ms"]
    assert entry["train_time"] == 42.5


def test_the_secret_images_and_seed_are_never_sent(db_url, digits, export_dir, kit):
    make_model_quest(db_url, digits)
    token = add_team(db_url, "curious")
    images, _, _ = secret_set(db_url)
    with open_engine(db_url) as engine, engine.connect() as connection:
        from sqlalchemy import select

        from cnnlab.quest.db import settings_table

        seed = connection.execute(select(settings_table.c.secret_seed)).scalar_one()
    with TestClient(create_app(db_url)) as client:
        client.post("/api/models", **export_upload(token, export_dir))
        views = [
            client.get(route, headers=bearer(token)).content
            for route in ("/", "/api/competition", "/api/leaderboard", "/api/log")
        ]
        views.append(client.get("/api/submissions", headers=bearer(token)).content)
    assert seed == format(20251126, "x")
    for view in views:
        assert images.numpy().tobytes()[:64] not in view
        assert seed.encode() not in view and b"secret_seed" not in view


@pytest.mark.parametrize(
    ("limits", "model", "description", "status", "message"),
    [
        (
            {"max_model_mb": 0.001},
            linear_model(),
            manifest(),
            413,
            "models up to 0.001 MB",
        ),
        ({"max_model_seconds": 1}, burdened_model(2048, 8), manifest(), 422, "limit of 1 s"),
        (
            {"max_model_memory_mb": 500},
            burdened_model(20_000, 1),  # a 1.6 GB matrix
            manifest(),
            422,
            "more memory than the quest's limit of 500 MB",
        ),
        (
            {},
            linear_model(input_shape=(1, 16, 16)),
            manifest(),
            422,
            "the model's input has shape ['N', 1, 16, 16]; expected one float32 input (N, 1, 8, 8)",
        ),
        (
            {},
            linear_model(classes=5),
            manifest(),
            422,
            "shape ['N', 5]; expected an output (N, 10)",
        ),
        (
            {},
            linear_model(),
            manifest(preprocessing__data_shape=[1, 28, 28]),
            422,
            "trained on 28x28x1 images; this quest's images are 8x8x1",
        ),
        ({}, linear_model(), manifest(classes=DIGITS[:5]), 422, "the model has 5 classes"),
        ({}, linear_model(), manifest(runtime="tflite"), 422, "ONNX models only"),
        ({}, b"\x08\x07 not a protobuf", manifest(), 422, "ONNX Runtime cannot load the model"),
        ({}, external_data_model("/etc/hostname"), manifest(), 422, "cannot load the model"),
        ({}, external_data_model("../quest.db"), manifest(), 422, "cannot load the model"),
        ({}, linear_model(), b"{not json", 422, "model.json is not JSON"),
    ],
    ids=[
        "file-size",
        "wall-time",
        "memory",
        "input-shape",
        "output-shape",
        "image-shape",
        "classes",
        "runtime",
        "not-onnx",
        "external-data-absolute",
        "external-data-relative",
        "not-json",
    ],
)
def test_a_model_over_a_limit_or_of_the_wrong_shape_is_refused_without_using_the_quota(
    tmp_path, digits, limits, model, description, status, message
):
    db_url = f"sqlite:///{tmp_path / 'quest.db'}"
    make_model_quest(db_url, digits, **limits)
    token = add_team(db_url, "over")
    with TestClient(create_app(db_url)) as client:
        answer = client.post("/api/models", **model_upload(token, model, description))
        assert answer.status_code == status, answer.text
        detail = answer.json()["detail"]
        assert detail.startswith("model refused: ") and message in detail
        assert "\n" not in detail and "Traceback" not in detail
        assert quota_left(client, token) == DAILY_LIMIT
        assert client.get("/api/leaderboard").json() == []
        if not limits:  # the same quest still scores a model of the right shape
            fine = client.post("/api/models", **model_upload(token, linear_model(), manifest()))
            assert fine.status_code == 201, fine.text


def test_the_same_class_names_in_another_order_are_scored_by_name(tmp_path, digits):
    """A model that always answers its first column: class "0", or class "9" when its
    model.json lists the digits backwards."""
    db_url = f"sqlite:///{tmp_path / 'quest.db'}"
    make_model_quest(db_url, digits)
    token = add_team(db_url, "backwards")
    first_column = onnx_bytes(
        [
            helper.make_node("Flatten", ["input"], ["flat"]),
            helper.make_node("MatMul", ["flat", "zeros"], ["nothing"]),
            helper.make_node("Add", ["nothing", "one_hot"], ["logits"]),
        ],
        [
            numpy_helper.from_array(np.zeros((64, 10), np.float32), "zeros"),
            numpy_helper.from_array(np.eye(10, dtype=np.float32)[0], "one_hot"),
        ],
    )
    with TestClient(create_app(db_url)) as client:
        straight = client.post("/api/models", **model_upload(token, first_column, manifest()))
        backwards = client.post(
            "/api/models", **model_upload(token, first_column, manifest(classes=DIGITS[::-1]))
        )
    _, labels, private = secret_set(db_url)
    assert straight.status_code == backwards.status_code == 201
    assert straight.json()["public_score"] == np.mean(labels[~private] == 0)
    assert backwards.json()["public_score"] == np.mean(labels[~private] == 9)


def test_a_model_with_a_fixed_batch_scores_as_with_a_dynamic_one(tmp_path, digits):
    """A fixed batch of 7 (360 is no multiple of it): the last batch is padded, then cut."""
    db_url = f"sqlite:///{tmp_path / 'quest.db'}"
    make_model_quest(db_url, digits)
    token = add_team(db_url, "fixed")
    with TestClient(create_app(db_url)) as client:
        dynamic = client.post("/api/models", **model_upload(token, linear_model(), manifest()))
        fixed = client.post("/api/models", **model_upload(token, linear_model(batch=7), manifest()))
    assert dynamic.status_code == fixed.status_code == 201, fixed.text
    assert fixed.json()["batch_size"] == 7 and dynamic.json()["batch_size"] == 64
    assert fixed.json()["public_score"] == dynamic.json()["public_score"]


def test_a_csv_quest_refuses_models(quest, export_dir):
    token = quest.team("csv team")
    with TestClient(create_app(quest.db_url)) as client:
        answer = client.post("/api/models", **export_upload(token, export_dir))
    assert answer.status_code == 409
    assert "scores predictions CSV files, not models" in answer.json()["detail"]


def test_a_course_session_from_the_cli(tmp_path, export_dir, kit):
    """The issue's acceptance: init with model submissions, two teams, each submits an export,
    the board shows the server's accuracy, inference time and size."""
    from cnnlab.cli import app

    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 'course.db'}"

    def cnnlab_quest(*args: str):
        result = runner.invoke(app, ["quest", *args])
        assert result.exit_code == 0, result.output
        return result

    created = cnnlab_quest("init", "--data", "digits", "--submissions", "model", "--db", db)
    assert "secret test images" in created.stdout
    tokens = {}
    for team in ("lenet", "linear"):
        added = cnnlab_quest("team", "add", team, "--db", db, "--json")
        tokens[team] = json.loads(added.stdout)["token"]
    linear_dir = write_export(tmp_path / "linear-export", linear_model(), manifest())
    with kit.uvicorn_thread(create_app(db)) as url:
        lenet = cnnlab_quest(
            "submit", "--model", str(export_dir), "--train-time", "12.5",
            "--token", tokens["lenet"], "--server", url,
        )  # fmt: skip
        assert "public score" in lenet.stdout and "ms/image" in lenet.stdout
        cnnlab_quest(
            "submit", str(linear_dir), "--model", "a linear layer", "--train-time", "0",
            "--token", tokens["linear"], "--server", url,
        )  # fmt: skip
        csv = tmp_path / "labels.csv"
        csv.write_text(kit.to_csv(np.zeros(360, dtype=int)))
        refused = runner.invoke(
            app,
            ["quest", "submit", str(csv), "--model", "labels", "--train-time", "0",
             "--token", tokens["linear"], "--server", url],
        )  # fmt: skip
        assert refused.exit_code == 2 and "scores models, not predictions" in refused.stderr
        assert "measured by the server" in cnnlab_quest("leaderboard", "--server", url).stdout
        entries = json.loads(cnnlab_quest("leaderboard", "--server", url, "--json").stdout)
    assert {entry["team"] for entry in entries} == {"lenet", "linear"}
    assert all(entry["inference_ms"] > 0 and entry["model_bytes"] > 0 for entry in entries)
    wide = Console(width=200, file=io.StringIO())
    wide.print(leaderboard_table(entries))
    shown = wide.file.getvalue()
    for header in ("score", "train time (s)", "inference (ms/image)", "model size"):
        assert header in shown
    lenet = next(entry for entry in entries if entry["team"] == "lenet")
    assert f"{lenet['inference_ms']:.3f}" in shown


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train-time", "1"], "expected PREDICTIONS_CSV, or --model EXPORT_DIR"),
        (["--model", "no-such-folder", "--train-time", "1"], "is no folder"),
        (["{csv}", "--train-time", "1"], "--model is missing"),
        (["{tmp}", "--train-time", "1"], "No model.json in"),
    ],
)
def test_submit_says_what_it_expects(tmp_path, args, message):
    from cnnlab.cli import app

    csv = tmp_path / "p.csv"
    csv.write_text("id,label\n0,1\n")
    filled = [a.replace("{csv}", str(csv)).replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(app, ["quest", "submit", *filled, "--token", "t"])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_scoring_process_sees_none_of_the_servers_secrets(monkeypatch):
    """The worker gets PATH and thread counts, not CNNLAB_QUEST_DB (a PostgreSQL password)."""
    from cnnlab.quest.models import worker_environment

    monkeypatch.setenv("CNNLAB_QUEST_DB", "postgresql://quest:hunter2@db/quest")
    environment = worker_environment(2)
    assert "CNNLAB_QUEST_DB" not in environment and environment["OMP_NUM_THREADS"] == "2"
