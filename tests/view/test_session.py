"""ViewSession and the cell traces against PyTorch's own layers and hand-computed numbers."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cnnlab
from cnnlab.data.device import preprocess
from cnnlab.view.session import open_view
from cnnlab.view.trace import explain_cell, slide_trace


def test_layers_are_the_summarys_rows_with_the_lectures_parameter_count(session):
    expected = cnnlab.summary(cnnlab.create_model("lenet-like")).layers
    assert [(r.path, r.output_shape, r.params) for r in session.layers] == [
        (r.path, r.output_shape, r.params) for r in expected
    ]
    assert sum(r.params for r in session.layers) == 81_194  # the slide's Keras summary
    assert [r.params for r in session.layers] == [60, 0, 880, 0, 0, 69_240, 10_164, 850]


def test_forward_records_each_layer_before_and_after_its_activation(
    session, test_image, network_input
):
    model = session.layers_model.model
    x = network_input(test_image)
    records = session.forward(test_image)
    conv1 = F.conv2d(x, model[0].weight, model[0].bias)  # (1, 6, 30, 30)
    pool1 = F.avg_pool2d(F.relu(conv1), 2)
    torch.testing.assert_close(records[0].inputs, x[0])
    torch.testing.assert_close(records[0].before, conv1[0])
    torch.testing.assert_close(records[0].after, F.relu(conv1)[0])
    torch.testing.assert_close(records[1].before, pool1[0])
    assert records[1].after is None and records[1].activation is None
    with torch.inference_mode():
        logits = model(x)
    torch.testing.assert_close(records[-1].before, logits[0])
    top = session.predict(test_image)
    assert [name for _, name in top] == [
        str(i) for i in logits[0].argsort(descending=True)[:5].tolist()
    ]


@pytest.mark.parametrize(("layer", "cell"), [(0, (2, 13, 11)), (2, (9, 4, 7))])
def test_a_conv_cell_is_the_sum_of_window_times_kernel_plus_bias(session, test_image, layer, cell):
    record = session.forward(test_image)[layer]
    channel, row, col = cell
    trace = explain_cell(record, channel, row, col)
    conv = record.module
    window = record.inputs[:, row : row + 3, col : col + 3].double()  # stride 1, no padding
    by_hand = float(
        (window * conv.weight[channel].detach().double()).sum() + conv.bias[channel].detach()
    )
    assert trace["result"] == pytest.approx(by_hand, rel=1e-9)
    assert trace["result"] == pytest.approx(float(record.before[channel, row, col]), abs=1e-5)
    products = sum(np.sum(c["products"]) for c in trace["channels"])
    assert products + trace["bias"] == pytest.approx(trace["result"], rel=1e-9)
    assert len(trace["channels"]) == conv.in_channels
    assert trace["activation"] == "relu"
    assert trace["activated"] == max(0.0, trace["result"])
    assert trace["model_after"] == pytest.approx(float(record.after[channel, row, col]), abs=1e-6)
    assert trace["matches"] is True


def test_a_pool_cell_is_the_mean_of_its_window(session, test_image):
    record = session.forward(test_image)[1]  # AvgPool2d(2) over the ReLU maps
    trace = explain_cell(record, 4, 3, 5)
    window = record.inputs[4, 6:8, 10:12].double()
    assert trace["result"] == pytest.approx(float(window.mean()), rel=1e-9)
    assert trace["window_origin"] == [6, 10] and trace["extent"] == [2, 2]
    assert trace["equation"].startswith("(") and trace["equation"].endswith(
        f"/ 4 = {trace['equation'].split('= ')[-1]}"
    )
    assert trace["matches"] is True


def test_cells_outside_conv_and_pool_maps_are_refused_by_name(session, test_image):
    records = session.forward(test_image)
    with pytest.raises(ValueError, match=r"layer '7' .* has no feature maps .*expected a conv"):
        explain_cell(records[5], 0, 0, 0)
    with pytest.raises(ValueError, match=r"row must be an integer in 0\.\.29 .* Received: row=30"):
        explain_cell(records[0], 0, 30, 0)


@pytest.mark.parametrize(
    ("example", "at", "expected"),
    [
        ("slide-2d", (0, 0), 114),  # the slide's sharpen kernel, padding 1
        ("slide-2d", (0, 1), 328),  # 5*113 - (0 + 60 + 56 + 121), by hand
        ("slide-rgb", (0, 0), -25),  # 308 - 498 + 164 + 1
        ("slide-pool-max", (0, 0), 100),
        ("slide-pool-avg", (0, 0), 36.5),
    ],
)
def test_slide_examples_reproduce_the_lecture(example, at, expected):
    trace = slide_trace(example, row=at[0], col=at[1])
    assert trace["result"] == expected


def test_slide_controls_change_stride_padding_and_kernel():
    strided = slide_trace("slide-2d", stride=2, row=1, col=1)
    assert strided["output_shape"] == [3, 3] and strided["window_origin"] == [2, 2]
    assert strided["result"] == 5 * 70 - (54 + 99 + 129 + 115)  # centre pixel 70, by hand
    identity = slide_trace("slide-2d", kernel="identity", padding=0, row=2, col=1)
    assert identity["result"] == 115  # the input pixel under the centre: x[3, 2]
    pooled = slide_trace("slide-pool-max", size=3, stride=1)
    assert pooled["output_shape"] == [2, 2] and pooled["result"] == 100
    with pytest.raises(ValueError, match=r"padding must be at most half the pool size"):
        slide_trace("slide-pool-max", padding=2)
    with pytest.raises(
        ValueError, match=r"stride must be an integer from 1 to 4\. Received: stride=0"
    ):
        slide_trace("slide-2d", stride=0)
    with pytest.raises(ValueError, match=r"kernel must be one of slide, sharpen"):
        slide_trace("slide-2d", kernel="nosuch")
    with pytest.raises(ValueError, match=r"example must be one of slide-2d"):
        slide_trace("slide-3d")


def test_a_zoo_model_opens_with_its_initial_weights_and_no_test_images():
    view = open_view("lenet-like")
    assert view.kind == "zoo" and view.dataset is None
    assert "initial weights" in view.layers_note
    assert view.data_shape == (1, 32, 32)


def test_wrongly_sized_pixels_are_refused(session):
    with pytest.raises(ValueError, match=r"C\*H\*W = 1\*8\*8 = 64 bytes .* Received: 63 bytes"):
        session.predict(bytes(63))


@pytest.mark.slow
def test_an_export_predicts_on_its_runtime_with_the_layers_of_its_checkpoint(digits_run, tmp_path):
    from cnnlab.deploy import ExportConfig, export_model, load_export

    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    export = export_model(ExportConfig(str(run), out=str(tmp_path / "export"))).folder
    view = open_view(export)
    assert view.kind == "export" and view.layers_note is None
    pixels = view.dataset.test_images[0].numpy().tobytes()
    runtime = load_export(export).predict(view.image_tensor(pixels))[0]
    best = runtime.argsort(descending=True)[:5]
    top = view.predict(pixels)
    assert [name for _, name in top] == [view.predictor.classes[i] for i in best]
    assert [p for p, _ in top] == pytest.approx([float(runtime[i]) for i in best])
    assert not isinstance(view.predictor.model, torch.nn.Sequential)  # the ONNX session
    checkpoint = cnnlab.load(run)
    with torch.inference_mode():
        logits = checkpoint.model(
            preprocess(view.image_tensor(pixels), checkpoint.normalization, checkpoint.adapter)
        )
    torch.testing.assert_close(view.forward(pixels)[-1].before, logits[0])

    (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes() + b"\0")
    changed = open_view(export)
    assert changed.layers_model is None and "changed since the export" in changed.layers_note
    with pytest.raises(ValueError, match="changed since the export"):
        changed.forward(pixels)
    (run / "checkpoint.pt").unlink()
    assert "is gone" in open_view(export).layers_note


def test_forward_passes_in_threads_keep_their_own_layers(session):
    """The server answers in threads: predictions and forward passes interleave."""
    images = [session.dataset.test_images[i].numpy().tobytes() for i in range(4)]
    expected = [session.forward(image)[0].before for image in images]
    failures: list[str] = []

    def work(index: int) -> None:
        for _ in range(15):
            session.predict(images[index])
            try:
                got = session.forward(images[index])[0].before
            except ValueError as error:
                failures.append(str(error))
                continue
            if not torch.equal(got, expected[index]):
                failures.append(f"image {index} got another image's layers")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_training_data_not_at_hand_leaves_the_page_without_test_images(digits_run, monkeypatch):
    import cnnlab.view.session as view_session

    def missing(name, **kwargs):
        raise FileNotFoundError(f"{name} is not on this machine")

    monkeypatch.setattr(view_session, "load_dataset", missing)
    view = open_view(digits_run)
    assert view.dataset is None
    assert view.data_note == (
        "no test images: digits is not at hand (digits is not on this machine); "
        "cnnlab data fetch digits"
    )
    with pytest.raises(FileNotFoundError, match="digits is not on this machine"):
        open_view(digits_run, data="digits")  # asked for by name: an error, not a note
