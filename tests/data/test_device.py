"""Device-resident batching: adaptation, normalisation, augmentation, determinism."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.data.device import (
    Augmentation,
    DeviceBatches,
    InputAdapter,
    Normalization,
    augment,
    draw_augmentation,
    preprocess,
    shift_and_flip,
)

IDENTITY = Normalization((0.0,), (1 / 255,))  # x -> x * 255 / 255: raw pixel values as floats

# --- InputAdapter ----------------------------------------------------------------------------


def test_same_shape_is_identity():
    adapter = InputAdapter((1, 28, 28), (1, 28, 28))
    assert adapter.description == "none" and adapter.identity
    x = torch.rand(2, 1, 28, 28)
    assert adapter(x) is x


def test_pad_28_to_32_border_is_black_after_normalisation():
    adapter = InputAdapter((1, 28, 28), (1, 32, 32))
    assert adapter.description == "28x28x1 -> 32x32x1: zero-padded by 2 pixels on each side"
    norm = Normalization((0.2860,), (0.3530,))
    images = torch.full((3, 1, 28, 28), 255, dtype=torch.uint8)
    x = preprocess(images, norm, adapter)
    assert x.shape == (3, 1, 32, 32) and x.dtype == torch.float32
    black, white = (0 - 0.2860) / 0.3530, (1 - 0.2860) / 0.3530
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    torch.testing.assert_close(x[:, 0][:, border], torch.full((3, int(border.sum())), black))
    torch.testing.assert_close(x[:, 0, 2:30, 2:30], torch.full((3, 28, 28), white))
    # A black pixel of the data and the padding agree: black images stay uniform.
    zeros = preprocess(torch.zeros(1, 1, 28, 28, dtype=torch.uint8), norm, adapter)
    torch.testing.assert_close(zeros, torch.full((1, 1, 32, 32), black))


def test_uneven_pad_description():
    adapter = InputAdapter((1, 28, 24), (1, 32, 32))
    assert adapter.description.endswith("2 pixels top and bottom, 4 left and right")
    assert adapter(torch.ones(1, 1, 28, 24))[0, 0, 2:30, 4:28].min() == 1


def test_one_to_three_channels_repeats():
    adapter = InputAdapter((1, 28, 28), (3, 28, 28))
    assert "1 channel repeated to 3" in adapter.description
    x = preprocess(torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8), IDENTITY, adapter)
    assert x.shape == (2, 3, 28, 28)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])


def test_three_to_one_channel_is_601_luminance():
    adapter = InputAdapter((3, 4, 4), (1, 4, 4))
    rgb = torch.zeros(3, 3, 4, 4)
    for c in range(3):
        rgb[c, c] = 1.0  # pure red, green, blue
    assert adapter(rgb)[:, 0, 0, 0].tolist() == pytest.approx([0.299, 0.587, 0.114])


@pytest.mark.parametrize(
    ("data", "model", "text"),
    [
        ((1, 28, 28), (3, 224, 224), "resized bilinearly; 1 channel repeated to 3"),
        ((3, 32, 32), (3, 28, 28), "resized bilinearly with antialiasing"),
        ((1, 28, 28), (1, 33, 33), "resized bilinearly"),  # odd margin
        ((1, 28, 28), (1, 48, 48), "resized bilinearly"),  # margin 10 > 8
    ],
)
def test_resize(data, model, text):
    adapter = InputAdapter(data, model)
    assert adapter.description.endswith(text)
    x = torch.full((2, *data), 0.25)
    torch.testing.assert_close(adapter(x), torch.full((2, *model), 0.25))  # constant stays


def test_impossible_adaptation_says_why():
    with pytest.raises(ValueError, match=r"cannot adapt 2 data channel\(s\) to the model's 3"):
        InputAdapter((2, 28, 28), (3, 28, 28))
    with pytest.raises(ValueError, match="data_shape must be"):
        InputAdapter((0, 28, 28), (1, 28, 28))
    with pytest.raises(ValueError, match="model_shape must be"):
        InputAdapter((1, 28, 28), (28, 28))


@settings(max_examples=40, deadline=None)
@given(
    channels=st.sampled_from([(1, 1), (1, 3), (3, 1), (3, 3)]),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    h2=st.integers(1, 40),
    w2=st.integers(1, 40),
)
def test_adapter_always_produces_the_model_shape(channels, h, w, h2, w2):
    adapter = InputAdapter((channels[0], h, w), (channels[1], h2, w2))
    assert adapter(torch.rand(2, channels[0], h, w)).shape == (2, channels[1], h2, w2)


# --- preprocess ------------------------------------------------------------------------------


def test_preprocess_normalises_per_channel():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3).repeat(1, 2, 1, 1)
    norm = Normalization((0.2, 0.5), (0.5, 0.25))
    x = preprocess(images, norm, InputAdapter((2, 1, 3), (2, 1, 3)))
    raw = torch.tensor([0, 51, 255]) / 255
    torch.testing.assert_close(x[0, 0, 0], (raw - 0.2) / 0.5)
    torch.testing.assert_close(x[0, 1, 0], (raw - 0.5) / 0.25)


def test_preprocess_rejects_wrong_inputs():
    adapter = InputAdapter((1, 4, 4), (1, 4, 4))
    with pytest.raises(ValueError, match="images must be uint8"):
        preprocess(torch.zeros(1, 1, 4, 4), IDENTITY, adapter)
    with pytest.raises(ValueError, match="do not match the adapter"):
        preprocess(torch.zeros(1, 1, 5, 4, dtype=torch.uint8), IDENTITY, adapter)
    with pytest.raises(ValueError, match="one mean and one std per channel"):
        Normalization((0.1, 0.2), (0.3,))
    with pytest.raises(ValueError, match="every std must be > 0"):
        Normalization((0.1,), (0.0,))


# --- augmentation ----------------------------------------------------------------------------


def _expected_shift(image: np.ndarray, dy: int, dx: int, flip: bool) -> np.ndarray:
    """The closed form, pixel by pixel: flip, then move the content by (dy, dx), zero fill."""
    source = image[:, ::-1] if flip else image
    out = np.zeros_like(image)
    height, width = image.shape
    for y in range(height):
        for x in range(width):
            if 0 <= y - dy < height and 0 <= x - dx < width:
                out[y, x] = source[y - dy, x - dx]
    return out


def test_shift_and_flip_moves_a_hand_made_image():
    image = np.arange(1, 31, dtype=np.uint8).reshape(5, 6)  # every pixel distinct
    cases = [(0, 0, False), (1, -2, False), (-2, 2, False), (2, 1, True), (0, 0, True)]
    batch = torch.from_numpy(np.stack([image] * len(cases)))[:, None]
    shifts = torch.tensor([[dy, dx] for dy, dx, _ in cases])
    flips = torch.tensor([flip for _, _, flip in cases])
    out = shift_and_flip(batch, shifts, flips, max_shift=2)
    assert out.dtype == torch.uint8 and out.shape == batch.shape
    for i, (dy, dx, flip) in enumerate(cases):
        np.testing.assert_array_equal(out[i, 0].numpy(), _expected_shift(image, dy, dx, flip))


def test_shift_and_flip_keeps_channels_together():
    image = torch.arange(3 * 4 * 4, dtype=torch.uint8).view(1, 3, 4, 4)
    out = shift_and_flip(image, torch.tensor([[1, 1]]), torch.tensor([False]), max_shift=1)
    for c in range(3):
        expected = _expected_shift(image[0, c].numpy(), 1, 1, False)
        np.testing.assert_array_equal(out[0, c].numpy(), expected)


def test_flips_only_when_enabled():
    shifts, flips = draw_augmentation(1000, Augmentation(max_shift=2, flip=False), seed=3)
    assert not flips.any() and shifts.abs().max() == 2
    _, flips = draw_augmentation(1000, Augmentation(max_shift=2, flip=True), seed=3)
    assert 400 < int(flips.sum()) < 600
    with pytest.raises(ValueError, match="max_shift must be an integer >= 0"):
        Augmentation(max_shift=-1)


# --- DeviceBatches ---------------------------------------------------------------------------


def _indexed(n: int, size: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose every pixel is the image's index, and labels equal to the index."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, size, size)
    return images.contiguous(), torch.arange(n)


def _batches(n=50, batch_size=8, size=6, **kwargs) -> DeviceBatches:
    images, labels = _indexed(n, size)
    kwargs.setdefault("adapter", InputAdapter((1, size, size), (1, size, size)))
    return DeviceBatches(
        images, labels, batch_size=batch_size, device="cpu", normalization=IDENTITY, **kwargs
    )


def test_batch_count_with_and_without_drop_last():
    assert len(_batches(50, 8)) == 7 and len(_batches(50, 8, drop_last=True)) == 6
    assert [len(y) for _, y in _batches(50, 8).epoch(0)] == [8] * 6 + [2]
    assert [len(y) for _, y in _batches(50, 8, drop_last=True).epoch(0)] == [8] * 6


def test_every_index_exactly_once_per_epoch_and_inputs_match_labels():
    batches = _batches(50, 8)
    seen = []
    for inputs, labels in batches.epoch(3):
        assert inputs.dtype == torch.float32 and labels.dtype == torch.int64
        torch.testing.assert_close(inputs[:, 0, 0, 0], labels.float())
        seen += labels.tolist()
    assert sorted(seen) == list(range(50)) and seen != list(range(50))


def test_no_shuffle_keeps_the_order():
    labels = torch.cat([y for _, y in _batches(20, 8, shuffle=False).epoch(5)])
    assert labels.tolist() == list(range(20))


def _epoch(batches: DeviceBatches, epoch: int, start_step: int = 0) -> list:
    return [(x.clone(), y.clone()) for x, y in batches.epoch(epoch, start_step=start_step)]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True)
    )


def test_determinism_and_exact_resume_including_augmentation():
    def make(seed=0):
        return _batches(60, 8, size=10, seed=seed, augmentation=Augmentation(2, flip=True))

    full = _epoch(make(), 2)
    assert _same(full, _epoch(make(), 2))  # same seed, same batches
    for k in (1, 4, len(full)):
        assert _same(_epoch(make(), 2, start_step=k), full[k:])
    assert not _same(full, _epoch(make(), 3))  # another epoch: another order
    assert not _same(full, _epoch(make(seed=1), 2))
    with pytest.raises(ValueError, match=r"start_step must be in 0\.\.8"):
        make().epoch(0, start_step=9)


def test_a_batch_is_augment_of_its_slice_with_the_step_seed():
    batches = _batches(30, 8, size=10, augmentation=Augmentation(2, flip=True), seed=4)
    order = batches.order(1)
    for step, (inputs, labels) in enumerate(batches.epoch(1)):
        index = order[step * 8 : (step + 1) * 8]
        assert labels.equal(index)
        expected = augment(batches.images[index], batches.augmentation, batches.step_seed(1, step))
        torch.testing.assert_close(inputs, expected.float())


def test_augmented_batches_are_shifted_copies_of_the_images():
    image = np.zeros((10, 10), dtype=np.uint8)
    image[2:5, 3:8] = 200  # an asymmetric bar: a flip would be visible
    image[2, 3] = 90
    images = torch.from_numpy(np.stack([image] * 64))[:, None]
    batches = DeviceBatches(
        images, torch.zeros(64, dtype=torch.int64), batch_size=64, device="cpu",
        normalization=IDENTITY, adapter=InputAdapter((1, 10, 10), (1, 10, 10)),
        augmentation=Augmentation(max_shift=2, flip=False),
    )  # fmt: skip
    ((inputs, _),) = batches.epoch(0)
    candidates = {
        (dy, dx): _expected_shift(image, dy, dx, False)
        for dy in range(-2, 3)
        for dx in range(-2, 3)
    }
    found = set()
    for x in inputs[:, 0].round().to(torch.uint8).numpy():
        matches = [shift for shift, expected in candidates.items() if np.array_equal(x, expected)]
        assert len(matches) == 1
        found.add(matches[0])
    assert len(found) > 10  # the shifts vary from image to image


def test_device_batches_validate_their_inputs():
    images, labels = _indexed(10)
    adapter = InputAdapter((1, 6, 6), (1, 6, 6))
    common = {"device": "cpu", "normalization": IDENTITY, "adapter": adapter}
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        DeviceBatches(images, labels, batch_size=0, **common)
    with pytest.raises(ValueError, match="expected 10 labels"):
        DeviceBatches(images, labels[:5], batch_size=2, **common)
    with pytest.raises(ValueError, match="images must be uint8"):
        DeviceBatches(images.float(), labels, batch_size=2, **common)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_equal_cpu_batches():
    def make(device):
        return _batches(60, 8, size=10, device=device, augmentation=Augmentation(2, flip=True))

    cpu, cuda = _epoch(make("cpu"), 1), _epoch(make("cuda"), 1)
    assert all(x.is_cuda and y.is_cuda for x, y in cuda)
    assert _same(cpu, [(x.cpu(), y.cpu()) for x, y in cuda])
