"""Every registered model: golden parameter counts, forward/backward on CPU, meta-device summaries.

Golden counts come from REFERENCE.md section 2 (the slides, Darknet's printout, the torchvision
definitions); the ones for vgg11/13/19 and resnet34/50/101 are torchvision's published counts.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from torch import nn

from cnnlab.models import create_model, get_model_spec, list_models
from cnnlab.models.googlenet import Inception
from cnnlab.models.lenet import (
    C3_CONNECTIONS,
    ConnectionTableConv2d,
    EuclideanRBF,
    ScaledTanh,
    Subsampling,
)
from cnnlab.models.resnet import BasicBlock, Bottleneck

GOLDEN_PARAMS = {
    "lenet-like": 81_194,
    "lenet5": 61_706,
    "lenet5-1998": 60_840,
    "mlp": 20_037_642,
    "darknet19": 20_842_376,
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "googlenet": 6_624_904,
    # default cfg: 3*16*9 + 2*16 (BN) + 16*32*9 + 2*32 + 32*10 + 10 = 464 + 4,672 + 330
    "darknetcfg": 5_466,
    # detectors, sum over convolutions of k*k*c_in*c_out + 2*c_out (batch norm) or + c_out (bias),
    # from Debian's cfg/yolov2-tiny.cfg: 464 + 4,672 + 18,560 + 73,984 + 295,424 + 1,180,672
    # + 4,720,640 (1024 3x3) + 4,719,616 (512 3x3) + 218,025 (425 1x1, bias)
    "yolov2-tiny": 11_232_057,
    # cfg/yolov3-tiny.cfg: the same six first stages (1,573,776) + 4,720,640 + 262,656 (256 1x1)
    # + 1,180,672 + 130,815 (255 1x1) + 33,024 (128 1x1) + 885,248 (256 3x3 of 384) + 65,535
    "yolov3-tiny": 8_852_366,
    # 10 classes: 464 + 4,672 + 18,560 (the stride-2 convolutions) + 55,488 (96 3x3 of 64)
    # + 166,272 (192 3x3 of 96) + 9,312 (48 1x1) + 41,664 (96 3x3) + 4,365 (45 1x1, bias)
    # + 2,400 (48 1x1 of 48) + 124,608 (96 3x3 of 48 + 96) + 4,365 (45 1x1 of 96, bias)
    "yolo-scenes": 432_170,
}


def outputs_of(model: nn.Module, out) -> torch.Tensor:
    """A classifier's logits (N, classes); a detector's raw head maps (N, A * (5 + C), H, W),
    flattened and joined (N, -1) after checking each map's channels."""
    if model.cnnlab.output != "detections":
        return out
    entries = 5 + model.cnnlab.num_classes
    assert all(o.ndim == 4 and o.shape[1] % entries == 0 for o in out), [o.shape for o in out]
    return torch.cat([o.flatten(1) for o in out], dim=1)


def trainable_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def run_leaves(model: nn.Module, x: torch.Tensor) -> list[tuple[nn.Module, tuple[int, ...]]]:
    """(leaf module, output shape) for every leaf call of one forward pass, in call order."""
    calls: list[tuple[nn.Module, tuple[int, ...]]] = []
    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [
        leaf.register_forward_hook(lambda m, _, out: calls.append((m, tuple(out.shape))))
        for leaf in leaves
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return calls


def meta_model(name: str, **kwargs: object) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs)


def test_golden_table_covers_the_registry() -> None:
    assert set(GOLDEN_PARAMS) == set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_parameter_count_matches_golden(name: str) -> None:
    assert trainable_params(meta_model(name)) == GOLDEN_PARAMS[name]


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_on_cpu(name: str) -> None:
    """One pass per model: logits of shape (N, classes), finite, and a gradient for every parameter.

    Train mode: BN uses batch statistics (fine at N = 2, the smallest map is 7x7) and dropout is on.
    """
    torch.manual_seed(0)
    spec = get_model_spec(name)
    model = create_model(name).train()
    logits = outputs_of(model, model(torch.randn(2, *spec.input_shape)))
    if model.cnnlab.output != "detections":
        assert logits.shape == (2, spec.num_classes)
    assert torch.isfinite(logits).all()
    # A random projection gives every logit a non-zero upstream gradient.
    (logits * torch.randn_like(logits)).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not no_grad, f"{name}: parameters without gradient: {no_grad}"


@pytest.mark.parametrize("name", list_models())
def test_meta_forward_with_overrides_calls_every_leaf_once(name: str) -> None:
    """What summaries rely on: meta tensors work, overrides apply, each leaf runs exactly once."""
    model = meta_model(name, num_classes=7, in_channels=2)
    _, height, width = get_model_spec(name).input_shape
    assert model.cnnlab.input_shape == (2, height, width)
    assert all(p.is_meta for p in model.parameters())
    calls = run_leaves(model, torch.empty(2, 2, height, width, device="meta"))
    if model.cnnlab.output == "detections":  # the last head's raw map: anchors x (5 + 7)
        assert calls[-1][1][0] == 2 and calls[-1][1][1] % (5 + 7) == 0
    else:
        assert calls[-1][1] == (2, 7)
    counts = Counter(id(module) for module, _ in calls)
    leaves = [m for m in model.modules() if not list(m.children())]
    assert sorted(counts.values()) == [1] * len(leaves), "a leaf ran twice or not at all"
    assert not any(isinstance(m, nn.Softmax | nn.LogSoftmax) for m in model.modules())


# --- LeNet family ---------------------------------------------------------------------------------


def test_lenet_like_matches_the_keras_summary() -> None:
    calls = run_leaves(create_model("lenet-like"), torch.zeros(1, 1, 32, 32))
    shapes = [shape for module, shape in calls if not isinstance(module, nn.ReLU)]
    assert shapes == [
        (1, 6, 30, 30),
        (1, 6, 15, 15),
        (1, 16, 13, 13),
        (1, 16, 6, 6),
        (1, 576),
        (1, 120),
        (1, 84),
        (1, 10),
    ]
    params = [trainable_params(m) for m, _ in calls if trainable_params(m)]
    assert params == [60, 880, 69_240, 10_164, 850]


def test_lenet5_maps_follow_table_14_1() -> None:
    calls = run_leaves(create_model("lenet5"), torch.zeros(1, 1, 32, 32))
    spatial = [shape[1:] for module, shape in calls if isinstance(module, nn.Conv2d | nn.AvgPool2d)]
    assert spatial == [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (120, 1, 1)]
    assert sum(isinstance(m, nn.Tanh) for m, _ in calls) == 4


def test_c3_connection_table_has_the_papers_60_connections() -> None:
    sizes = Counter(len(inputs) for inputs in C3_CONNECTIONS)
    assert sizes == {3: 6, 4: 9, 6: 1}
    assert sum(len(inputs) for inputs in C3_CONNECTIONS) == 6 * 3 + 9 * 4 + 1 * 6 == 60
    assert all(len(set(inputs)) == len(inputs) for inputs in C3_CONNECTIONS)
    c3 = ConnectionTableConv2d(6, C3_CONNECTIONS, 5)
    assert c3.weight.shape == (60, 5, 5)
    assert trainable_params(c3) == 25 * 60 + 16
    assert "connections=60 of 96" in repr(c3)


def connectivity(c3: ConnectionTableConv2d) -> torch.Tensor:
    """(16, 6) bool: does output map j depend on input map i? Measured by input gradients."""
    x = torch.randn(2, 6, 14, 14, requires_grad=True)
    out = c3(x)
    rows = []
    for j in range(c3.out_channels):
        (grad,) = torch.autograd.grad(out[:, j].sum(), x, retain_graph=True)
        rows.append(grad.abs().sum(dim=(0, 2, 3)) > 0)
    return torch.stack(rows)


def test_c3_unconnected_weights_are_zero_and_stay_zero_after_a_step() -> None:
    torch.manual_seed(0)
    model = create_model("lenet5-1998")
    c3 = next(m for m in model.modules() if isinstance(m, ConnectionTableConv2d))
    table = torch.zeros(16, 6, dtype=torch.bool)
    for j, inputs in enumerate(C3_CONNECTIONS):
        table[j, list(inputs)] = True
    assert torch.equal(connectivity(c3), table)

    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    before = c3.weight.detach().clone()
    model(torch.randn(4, 1, 32, 32)).logsumexp(dim=1).sum().backward()
    assert c3.weight.grad is not None and (c3.weight.grad.abs().sum(dim=(1, 2)) > 0).all()
    optimizer.step()
    assert not torch.equal(c3.weight, before)
    dense = c3.dense_weight().detach()
    assert (dense[~table] == 0).all() and (dense[table].abs().sum(dim=(1, 2)) > 0).all()
    assert torch.equal(connectivity(c3), table)


def test_scaled_tanh_maps_plus_minus_one_to_itself() -> None:
    x = torch.tensor([-1.0, 0.0, 1.0])
    torch.testing.assert_close(ScaledTanh()(x), x, atol=1e-4, rtol=0)


def test_subsampling_is_coefficient_times_sum_plus_bias() -> None:
    coefficient, bias = torch.tensor([0.5, -2.0]), torch.tensor([1.0, 0.25])
    layer = Subsampling(2)
    with torch.no_grad():
        layer.weight.copy_(coefficient)
        layer.bias.copy_(bias)
    x = torch.arange(32.0).view(1, 2, 4, 4)
    sums = x.view(1, 2, 2, 2, 2, 2).sum(dim=(3, 5))  # (1, 2, 2, 2): each 2x2 cell summed
    expected = sums * coefficient.view(1, 2, 1, 1) + bias.view(1, 2, 1, 1)
    torch.testing.assert_close(layer(x), expected)


def test_rbf_logits_are_negative_squared_distances() -> None:
    torch.manual_seed(0)
    rbf = EuclideanRBF(84, 10)
    x = torch.randn(3, 84)
    torch.testing.assert_close(rbf(x), -(torch.cdist(x, rbf.centres) ** 2), rtol=1e-4, atol=1e-3)
    assert set(rbf.centres.detach().unique().tolist()) == {-1.0, 1.0}


# --- MLP, Darknet-19, ResNet, GoogLeNet ---------------------------------------------------------


def test_mlp_layers_match_the_hardware_slide() -> None:
    model = meta_model("mlp")
    dense = [trainable_params(m) for m in model.modules() if isinstance(m, nn.Linear)]
    assert dense == [3_215_360, 16_781_312, 40_970]
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    narrow = meta_model("mlp", width=64, dropout=0.25, in_channels=3)
    linears = [m for m in narrow.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3 * 784, 64), (64, 64), (64, 10)]
    assert {m.p for m in narrow.modules() if isinstance(m, nn.Dropout)} == {0.25}


# Darknet's printout for darknet19.cfg at 256x256x3 (REFERENCE.md section 2): layers 0-23.
DARKNET19_PRINTOUT = [
    ("conv", 32, 3, 256), ("max", 32, 2, 128), ("conv", 64, 3, 128), ("max", 64, 2, 64),
    ("conv", 128, 3, 64), ("conv", 64, 1, 64), ("conv", 128, 3, 64), ("max", 128, 2, 32),
    ("conv", 256, 3, 32), ("conv", 128, 1, 32), ("conv", 256, 3, 32), ("max", 256, 2, 16),
    ("conv", 512, 3, 16), ("conv", 256, 1, 16), ("conv", 512, 3, 16), ("conv", 256, 1, 16),
    ("conv", 512, 3, 16), ("max", 512, 2, 8),
    ("conv", 1024, 3, 8), ("conv", 512, 1, 8), ("conv", 1024, 3, 8), ("conv", 512, 1, 8),
    ("conv", 1024, 3, 8), ("conv", 1000, 1, 8),
]  # fmt: skip


def test_darknet19_follows_darknets_printout() -> None:
    model = meta_model("darknet19")
    calls = run_leaves(model, torch.empty(1, 3, 256, 256, device="meta"))
    modules = [m for m, _ in calls]
    expected_types: list[type[nn.Module]] = []
    for kind, *_ in DARKNET19_PRINTOUT[:-1]:
        expected_types += (
            [nn.MaxPool2d] if kind == "max" else [nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU]
        )
    expected_types += [nn.Conv2d, nn.AdaptiveAvgPool2d, nn.Flatten]
    assert [type(m) for m in modules] == expected_types

    layers = [(m, shape) for m, shape in calls if isinstance(m, nn.Conv2d | nn.MaxPool2d)]
    for (module, shape), (_, filters, size, out_hw) in zip(layers, DARKNET19_PRINTOUT, strict=True):
        assert shape == (1, filters, out_hw, out_hw)
        assert module.kernel_size in (size, (size, size))
    convs = [m for m in modules if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None for c in convs[:-1]) and convs[-1].bias is not None
    assert {m.negative_slope for m in modules if isinstance(m, nn.LeakyReLU)} == {0.1}
    norms = [m for m in modules if isinstance(m, nn.BatchNorm2d)]
    assert sum(m.running_mean.numel() + m.running_var.numel() for m in norms) == 14_400


@pytest.mark.parametrize(
    ("name", "block", "count", "projections"),
    # Projection shortcuts where width or resolution changes: stages 2-4, and stage 1 too when
    # bottlenecks expand 64 -> 256.
    [("resnet18", BasicBlock, 8, 3), ("resnet152", Bottleneck, 50, 4)],
)
def test_resnet_stacks_its_blocks(
    name: str, block: type[nn.Module], count: int, projections: int
) -> None:
    blocks = [m for m in meta_model(name).modules() if isinstance(m, BasicBlock | Bottleneck)]
    assert len(blocks) == count and all(type(b) is block for b in blocks)
    assert sum(b.shortcut is not None for b in blocks) == projections


def test_residual_block_adds_the_identity() -> None:
    """With the residual's last BN zeroed the block is relu(x): the skip connection is there."""
    block = BasicBlock(8, 8).eval()
    last_bn = block.residual[-1]
    assert isinstance(last_bn, nn.BatchNorm2d)
    nn.init.zeros_(last_bn.weight)
    nn.init.zeros_(last_bn.bias)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_googlenet_inception_widths_and_kernels() -> None:
    modules = list(meta_model("googlenet").modules())
    inceptions = [m for m in modules if isinstance(m, Inception)]
    assert [m.out_channels for m in inceptions] == [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    # The "5x5" branch uses 3x3 kernels, as torchvision does: that gives the 6,624,904 parameters.
    assert all(m.branch5[1][0].kernel_size == (3, 3) for m in inceptions)
    assert all(m.eps == 0.001 for m in modules if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize("name", ["lenet-like", "mlp"])
def test_the_lectures_keras_models_start_as_keras_does(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, **({"width": 64} if name == "mlp" else {}))
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for layer in layers:
        weight = layer.weight
        receptive = weight[0, 0].numel() if weight.dim() == 4 else 1
        fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
        bound = math.sqrt(6 / (fan_in + fan_out))  # Glorot uniform
        assert weight.abs().max() <= bound
        assert weight.abs().max() > 0.9 * bound
        assert torch.count_nonzero(layer.bias) == 0
