"""Bad input to the deploy API and commands: one clear message naming the argument."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.deploy import ExportConfig, load_export
from cnnlab.deploy.extras import MissingExtraError, require

runner = CliRunner()


def test_unknown_format():
    with pytest.raises(ValueError, match=r"format.*onnx.*Received: format='caffe'"):
        ExportConfig("lenet-like", format="caffe")
    result = runner.invoke(app, ["export", "lenet-like", "--format", "caffe"])
    assert result.exit_code == 2
    assert "caffe" in result.output


def test_run_folder_without_checkpoint(tmp_path):
    from cnnlab.deploy import export_model

    (tmp_path / "run").mkdir()
    with pytest.raises(FileNotFoundError, match=r"No checkpoint.pt in .*run"):
        export_model(ExportConfig(str(tmp_path / "run"), out=str(tmp_path / "x")))


def test_unknown_model_name_gets_a_suggestion():
    from cnnlab.deploy import export_model

    with pytest.raises(ValueError, match="lenet-like"):
        export_model(ExportConfig("lenet-lik"))


def test_export_folder_without_model_json(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(FileNotFoundError, match=r"No model.json in .*: expected an export folder"):
        load_export(tmp_path)
    result = runner.invoke(app, ["evaluate", str(tmp_path)])
    assert result.exit_code == 2
    assert "No model.json" in result.stderr


def test_model_json_of_another_format(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps({"format": "keras"}))
    with pytest.raises(ValueError, match="not a cnnlab export description"):
        load_export(tmp_path)


def test_out_folder_with_other_files_is_refused(tmp_path):
    from cnnlab.deploy import export_model

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"out must be a new or empty folder"):
        export_model(ExportConfig("mlp", out=str(tmp_path)))
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(
        __import__("cnnlab.deploy.extras").deploy.extras.PACKAGES,
        "onnx",
        ("no_such_module_xyz", "onnx"),
    )
    with pytest.raises(MissingExtraError, match=r"pip install 'cnnlab\[deploy\]'"):
        require("onnx", "ONNX export")


@pytest.mark.parametrize("value", [0, -1, True])
def test_calibration_must_be_a_positive_count(value):
    with pytest.raises(ValueError, match=rf"calibration.*Received: calibration={value!r}"):
        ExportConfig("mlp", int8=True, calibration=value)
