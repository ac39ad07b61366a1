"""Run files: atomic writes, the checkpoint format and its errors, RNG states, run folders."""

import json
import random

import numpy as np
import pytest
import torch

from cnnlab.runtime.files import append_jsonl, atomic_write, write_json
from cnnlab.train import load_checkpoint
from cnnlab.train.checkpoint import (
    CHECKPOINT_KEYS,
    capture_rng,
    checkpoint_file,
    new_run_dir,
    restore_rng,
)

CPU = torch.device("cpu")


def minimal_checkpoint(**changes):
    checkpoint = dict.fromkeys(CHECKPOINT_KEYS)
    checkpoint.update(
        format="cnnlab-checkpoint",
        version=1,
        model={"name": "lenet-like", "kwargs": {}, "input_shape": [1, 32, 32], "num_classes": 10},
    )
    checkpoint.update(changes)
    return checkpoint


def test_atomic_write_replaces_the_file_or_leaves_it_alone(tmp_path):
    path = tmp_path / "data.bin"
    atomic_write(path, lambda file: file.write(b"first"))
    assert path.read_bytes() == b"first"

    def fail_halfway(file):
        file.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, fail_halfway)
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]  # no temporary file left


def test_json_files(tmp_path):
    write_json(tmp_path / "report.json", {"accuracy": 0.5})
    assert json.loads((tmp_path / "report.json").read_text()) == {"accuracy": 0.5}
    with pytest.raises(ValueError, match="not JSON compliant"):  # refused, not written as NaN
        write_json(tmp_path / "report.json", {"accuracy": float("nan")})
    assert json.loads((tmp_path / "report.json").read_text()) == {"accuracy": 0.5}
    for epoch in (1, 2):
        append_jsonl(tmp_path / "metrics.jsonl", {"epoch": epoch})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"epoch": 1}, {"epoch": 2}]


def test_load_checkpoint_accepts_a_run_folder_or_the_file(tmp_path):
    torch.save(minimal_checkpoint(), tmp_path / "checkpoint.pt")
    assert load_checkpoint(tmp_path)["model"]["name"] == "lenet-like"
    assert load_checkpoint(tmp_path / "checkpoint.pt")["version"] == 1
    assert checkpoint_file(tmp_path) == tmp_path / "checkpoint.pt"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"just text", "is not a cnnlab checkpoint: torch.save did not write it"),
        ({"weights": torch.zeros(2)}, "expected format='cnnlab-checkpoint', found None"),
        (torch.zeros(3), "expected format='cnnlab-checkpoint', found 'Tensor'"),
        (minimal_checkpoint(version=2), "of version 2; this cnnlab reads version 1"),
        ({"format": "cnnlab-checkpoint", "version": 1}, "incomplete cnnlab checkpoint: missing"),
        ({"object": random.Random()}, "holds Python objects"),
    ],
)
def test_load_checkpoint_names_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "model.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(ValueError) as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_load_checkpoint_of_another_model(tmp_path):
    torch.save(minimal_checkpoint(), tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError) as caught:
        load_checkpoint(tmp_path, expect_model="resnet18")
    assert "holds a checkpoint of model 'lenet-like', not 'resnet18'" in str(caught.value)


def test_missing_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such run folder or checkpoint"):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="expected a run folder written by cnnlab train"):
        load_checkpoint(tmp_path)


def test_rng_states_round_trip_through_a_checkpoint_file(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    state = capture_rng(CPU)
    torch.save({"rng": state}, tmp_path / "rng.pt")
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"], CPU)
    drawn = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    assert torch.equal(expected[0], drawn[0])
    assert np.array_equal(expected[1], drawn[1]) and expected[2] == drawn[2]
    assert state["cuda"] is None


def test_new_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    default = new_run_dir(None, model="lenet5", data="digits")
    assert default.parent == tmp_path / "runs" and default.name.startswith("lenet5-digits-2")
    assert not default.exists()  # created only once the run can start
    assert new_run_dir("fresh", model="m", data="d") == tmp_path / "fresh"

    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match=r"is an existing file\. Received: out='file\.txt'"):
        new_run_dir("file.txt", model="m", data="d")
    with pytest.raises(ValueError, match=r"cannot be created: .*file\.txt is a file"):
        new_run_dir("file.txt/run", model="m", data="d")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="already holds a run"):
        new_run_dir("old", model="m", data="d")
