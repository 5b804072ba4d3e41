"""Tests of ganaug.augment: each of the 14 operations against torchvision's own, the magnitude tables, per-image
draws in one batch, value range and determinism, cutout's square, and one clear DataError per bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torchvision.transforms import InterpolationMode
from torchvision.transforms.autoaugment import RandAugment, TrivialAugmentWide, _apply_op

import ganaug.augment.traditional as augment_module
from ganaug.augment.traditional import (
    AUGMENTATIONS,
    GEOMETRIC_OPERATIONS,
    MAGNITUDE_SPACES,
    OPERATIONS,
    RANDAUGMENT_MAGNITUDES,
    apply_cutout,
    random_operations,
    traditional_augment,
)
from ganaug.data.config import DataError
from ganaug.data.tensors import to_float

# torchvision's float ops need [0, 1] images and its posterize / solarize (threshold up to 255) / equalize
# need uint8: each op is checked on the type torchvision's TrivialAugmentWide would apply it to.
UINT8_OPERATIONS = ("Posterize", "Solarize", "Equalize")


def real_looking(n: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """uint8 [n, C, size, size]: sklearn digits (upscaled) in a random tint over a smooth random background."""
    rng = torch.Generator().manual_seed(seed)
    digits = torch.tensor(load_digits().images[:n], dtype=torch.float32)[:, None] / 16
    digits = F.interpolate(digits, size=(size, size), mode="bilinear", align_corners=False)
    background = torch.rand(n, channels, 4, 4, generator=rng)
    background = F.interpolate(background, size=(size, size), mode="bicubic", align_corners=False)
    tint = torch.rand(n, channels, 1, 1, generator=rng)
    return ((0.6 * background + 0.8 * digits * tint).clamp(0, 1) * 255).round().to(torch.uint8)


def torchvision_op(images: torch.Tensor, name: str, magnitude: float) -> torch.Tensor:
    """torchvision's `_apply_op` (what TrivialAugmentWide and RandAugment call) per image, on the [0, 1] scale."""
    if name in UINT8_OPERATIONS:
        out = [_apply_op(image, name, magnitude, InterpolationMode.NEAREST, None) for image in images]
        return torch.stack(out).float() / 255
    out = [_apply_op(image.float() / 255, name, magnitude, InterpolationMode.NEAREST, None) for image in images]
    return torch.stack(out)


def sample_magnitudes(name: str, size: int) -> list[float]:
    """Three bins of TrivialAugmentWide's table for `name`, with both signs where it is signed."""
    magnitudes, signed = MAGNITUDE_SPACES["trivialaugment"](size, size)[name]
    if magnitudes.ndim == 0:
        return [0.0]
    values = [float(magnitudes[index]) for index in (5, 17, 30)]
    return values + [-v for v in values] if signed else values


# ----------------------------------------------------------------------------------------------
# The operations against torchvision.


@pytest.mark.parametrize("name", list(OPERATIONS))
@pytest.mark.parametrize("channels,size", [(3, 32), (1, 28)])
def test_operation_matches_torchvision(name, channels, size):
    images = real_looking(6, channels, size)
    for magnitude in sample_magnitudes(name, size):
        ours = OPERATIONS[name](to_float(images), torch.full((len(images),), magnitude))
        assert ours.dtype == torch.float32 and ours.shape == images.shape
        assert ours.min() >= -1 and ours.max() <= 1
        ours = (ours + 1) / 2
        reference = torchvision_op(images, name, magnitude)
        difference = (ours - reference).abs()
        if name in GEOMETRIC_OPERATIONS:
            # Nearest neighbour: a source coordinate within float rounding of a .5 tie may round the other
            # way; allow 1 % of pixels (measured: none differ).
            assert (difference > 1e-6).float().mean() <= 0.01, (name, magnitude)
        elif name in UINT8_OPERATIONS:
            assert difference.max() <= 1e-6, (name, magnitude)  # the same uint8 levels
        else:
            assert difference.max() <= 1e-5, (name, magnitude)  # float arithmetic in another order


def test_color_is_identity_on_one_channel_and_ops_change_images():
    gray = to_float(real_looking(4, 1, 32))
    assert torch.equal(OPERATIONS["Color"](gray, torch.full((4,), 0.9)), gray)
    rgb = to_float(real_looking(4, 3, 32))
    for name in OPERATIONS:
        if name not in ("Identity",):
            magnitude = max(sample_magnitudes(name, 32), key=abs) if name != "Posterize" else 2.0
            assert not torch.equal(OPERATIONS[name](rgb, torch.full((4,), magnitude)), rgb), name


def test_magnitude_tables_are_torchvisions():
    trivial = TrivialAugmentWide()._augmentation_space(RANDAUGMENT_MAGNITUDES)
    assert list(trivial) == list(OPERATIONS)  # same order: a draw of index k is the same op
    ours = MAGNITUDE_SPACES["trivialaugment"](32, 32)
    for name, (magnitudes, signed) in trivial.items():
        assert torch.equal(ours[name][0], magnitudes) and ours[name][1] == signed, name
    # Translation is scaled to the image: up to 8 px on 8x8 instead of torchvision's 32.
    small = MAGNITUDE_SPACES["trivialaugment"](8, 8)
    assert torch.allclose(small["TranslateX"][0], trivial["TranslateX"][0] / 4)
    for size in [(32, 32), (8, 8), (28, 28)]:
        rand = RandAugment()._augmentation_space(RANDAUGMENT_MAGNITUDES, size)
        ours = MAGNITUDE_SPACES["randaugment"](*size)
        assert list(rand) == list(OPERATIONS)
        for name, (magnitudes, signed) in rand.items():
            assert torch.equal(ours[name][0], magnitudes) and ours[name][1] == signed, (size, name)


# ----------------------------------------------------------------------------------------------
# Whole methods: per-image draws, range, determinism, devices paths.


def test_each_image_draws_its_own_operation():
    one = to_float(real_looking(1, 3, 32))
    batch = one.expand(64, -1, -1, -1).contiguous()
    out = random_operations(batch, "trivialaugment", torch.Generator().manual_seed(0))
    distinct = {tuple(image.flatten().tolist()) for image in out}
    assert len(distinct) >= 30  # 14 ops x 31 bins x 2 signs: copies of one image come out different
    unchanged = (out == batch).flatten(1).all(dim=1)
    assert 0 < unchanged.sum() < 64  # Identity (and e.g. posterize at 8 bits) leave some images as they are
    same_geometry = ((out > -1) == (batch > -1)).flatten(1).all(dim=1)
    assert 0 < same_geometry.sum() < 64  # some images moved, others only changed colour


@pytest.mark.parametrize("method", list(AUGMENTATIONS))
@pytest.mark.parametrize("channels,size", [(3, 32), (1, 8)])
def test_methods_keep_shape_range_and_are_deterministic(method, channels, size):
    x = to_float(real_looking(32, channels, size))
    original = x.clone()
    run = lambda seed: traditional_augment(x, method, torch.Generator().manual_seed(seed), cutout=size // 4,
                                           randaugment_ops=2, randaugment_magnitude=20)
    out = run(0)
    assert out.shape == x.shape and out.dtype == torch.float32 and out.device == x.device
    assert out.min() >= -1 and out.max() <= 1
    assert torch.equal(x, original)  # the input is never modified
    assert torch.equal(out, run(0))
    assert not torch.equal(out, run(1))


def test_none_without_cutout_returns_the_images():
    x = to_float(real_looking(4, 3, 32))
    assert torch.equal(traditional_augment(x, "none"), x)


def test_flip_translate_is_the_data_modules_augment():
    x = to_float(real_looking(16, 3, 32))
    ours = traditional_augment(x, "flip_translate", torch.Generator().manual_seed(3))
    assert torch.equal(ours, augment_module.flip_translate(x, torch.Generator().manual_seed(3), translate=4))


@pytest.mark.parametrize("method", ["trivialaugment", "randaugment"])
def test_whole_batch_path_matches_chosen_images_path(method, monkeypatch):
    """CUDA's path (every op on the whole batch, torch.where, no host sync) gives what the CPU's does."""
    x = to_float(real_looking(48, 3, 32))
    cpu = traditional_augment(x, method, torch.Generator().manual_seed(5), cutout=8)
    monkeypatch.setattr(augment_module, "_compute_on_all", lambda device: True)
    everywhere = traditional_augment(x, method, torch.Generator().manual_seed(5), cutout=8)
    assert torch.allclose(cpu, everywhere, atol=1e-6)


def test_randaugment_applies_ops_per_image():
    x = to_float(real_looking(1, 3, 32)).expand(64, -1, -1, -1)
    rng = torch.Generator().manual_seed(0)
    one = traditional_augment(x, "randaugment", rng, randaugment_ops=1, randaugment_magnitude=30)
    assert len({tuple(image.flatten().tolist()) for image in one}) >= 30


# ----------------------------------------------------------------------------------------------
# Cutout.


@pytest.mark.parametrize("size", [1, 4, 5, 16])
def test_cutout_zeroes_one_square_per_image(size):
    x = torch.ones(400, 3, 32, 32)
    out = apply_cutout(x, size, torch.Generator().manual_seed(size))
    cut = out == 0
    assert torch.equal(cut, cut[:, :1].expand_as(cut))  # all channels
    assert torch.all((out == 0) | (out == 1))
    cut = cut[:, 0]
    whole = 0
    for mask in cut:
        rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
        height, width = len(rows), len(cols)
        assert 1 <= height <= size and 1 <= width <= size
        assert mask.sum() == height * width  # one filled rectangle
        assert rows[-1] - rows[0] + 1 == height and cols[-1] - cols[0] + 1 == width
        # A square clipped only at the image border.
        assert height == size or rows[0] == 0 or rows[-1] == 31
        assert width == size or cols[0] == 0 or cols[-1] == 31
        whole += height == size and width == size
    # A centre at least size // 2 px inside the border gives the whole size x size square.
    assert whole >= 0.7 * len(cut) * ((32 - size + 1) / 32) ** 2


def test_cutout_centre_covers_the_whole_image():
    x = torch.ones(2000, 1, 8, 8)
    cut = apply_cutout(x, 1, torch.Generator().manual_seed(0)) == 0
    assert cut.any(dim=0).all()  # every pixel can be the centre, borders included


# ----------------------------------------------------------------------------------------------
# Bad input.


def test_bad_input_names_the_key_and_the_valid_values():
    x = to_float(real_looking(2, 3, 32))
    with pytest.raises(DataError, match="traditional_aug='trivial'.*valid: none, flip_translate, "
                                        "trivialaugment, randaugment"):
        traditional_augment(x, "trivial")
    with pytest.raises(DataError, match=r"randaugment_magnitude=31 .*valid: an integer in \[0, 30\]"):
        traditional_augment(x, "randaugment", randaugment_magnitude=31)
    with pytest.raises(DataError, match=r"randaugment_magnitude=-1 .*\[0, 30\]"):
        traditional_augment(x, "randaugment", randaugment_magnitude=-1)
    with pytest.raises(DataError, match="randaugment_ops=0 .*valid: an integer >= 1"):
        traditional_augment(x, "randaugment", randaugment_ops=0)
    with pytest.raises(DataError, match=r"cutout=33 .*32x32.*valid: an integer in \[0, 32\]"):
        traditional_augment(x, "none", cutout=33)
    with pytest.raises(DataError, match=r"cutout=-1 .*valid: an integer in \[0, 32\]"):
        traditional_augment(x, "none", cutout=-1)
    with pytest.raises(DataError, match="float images"):
        traditional_augment(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "trivialaugment")
    with pytest.raises(DataError, match="C = 1 or 3"):
        traditional_augment(torch.zeros(2, 4, 32, 32), "trivialaugment")
