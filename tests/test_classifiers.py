"""Classifiers: the same contract for every registry key and image shape (logit shape, learning,
channels_last)."""


import pytest
import torch
from conftest import adam_losses, make_spec

from ganaug.classifier.models import CLASSIFIERS, build_classifier
from ganaug.config import ConfigError

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)]
NUM_OUTPUTS = 5  # e.g. all_in_one over 4 classes: the head must follow num_outputs, not the spec


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_classifier_contract(name, shape):
    torch.manual_seed(0)
    # At width 0.25 the cnn's dropout drowns what a dozen steps can learn; the resnet is costlier.
    model = build_classifier(name, make_spec(*shape), NUM_OUTPUTS, width=0.25 if name == "resnet" else 0.5)
    y = torch.arange(10) % NUM_OUTPUTS
    prototypes = torch.rand(NUM_OUTPUTS, *shape) * 1.6 - 0.8
    x = (prototypes[y] + 0.1 * torch.randn(10, *shape)).clamp(-1, 1)
    assert model(x).shape == (10, NUM_OUTPUTS)

    # A few Adam steps on one fixed batch of class-dependent images lower the loss.
    losses = adam_losses(model, x, y, steps=12, lr=3e-3)
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_channels_last_gives_the_same_logits(name):
    torch.manual_seed(0)
    model = build_classifier(name, make_spec(3, 32, 32), NUM_OUTPUTS, width=0.25).eval()
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    out = model(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(out, expected, atol=1e-5)


def test_width_scales_the_model():
    spec = make_spec(3, 32, 32)
    for name in CLASSIFIERS:
        small, large = (sum(p.numel() for p in build_classifier(name, spec, 10, w).parameters())
                        for w in (0.25, 0.5))
        assert small < large, name


def test_unknown_classifier_names_the_valid_ones():
    with pytest.raises(ConfigError, match="classifier='vit' is not one of mlp, cnn, resnet, airbench"):
        build_classifier("vit", make_spec(1, 8, 8), 10)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_classifier_dropout_scales_every_dropout_rate_and_zero_removes_them(name):
    spec = make_spec(3, 32, 32)
    rates = lambda scale: [m.p for m in build_classifier(name, spec, 10, dropout=scale).modules()
                           if isinstance(m, torch.nn.Dropout)]
    assert rates(1.0) and [r / 2 for r in rates(1.0)] == rates(0.5)
    assert rates(0) == []
    plain = build_classifier(name, spec, 10, dropout=0)
    assert not any(isinstance(m, torch.nn.Dropout) for m in plain.modules())


def test_airbench_has_no_dropout_and_batchnorm_with_a_fixed_scale():
    model = build_classifier("airbench", make_spec(3, 32, 32), 10)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(not m.weight.requires_grad and m.momentum == 0.4 for m in norms)
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())
