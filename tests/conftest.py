"""Shared test setup: one torch thread, and a stand-in DataSpec for model contract tests."""

from types import SimpleNamespace

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny models: OpenMP threads cost more than they give and spin-wait badly when other processes
    (Ray trial workers) share the cores (measured 10x slower with 2 threads on the 2-core CI box)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_spec(channels=1, height=8, width=8, num_classes=4):
    """Stand-in for ganaug.data.DataSpec (models read only the shape and num_classes)."""
    return SimpleNamespace(channels=channels, height=height, width=width, num_classes=num_classes,
                           class_names=tuple(str(k) for k in range(num_classes)),
                           class_counts=(10,) * num_classes)


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def real_batch(spec, n, seed=0):
    """Class-dependent smooth images in [-1, 1]: a learnable 'real' distribution."""
    g = seeded(seed)
    y = torch.arange(n) % spec.num_classes
    prototypes = torch.rand(spec.num_classes, spec.channels, spec.height, spec.width, generator=g) * 1.6 - 0.8
    x = prototypes[y] + 0.05 * torch.randn(n, spec.channels, spec.height, spec.width, generator=g)
    return x.clamp(-1, 1), y


def adam_losses(model, x, y, steps, lr):
    """The cross-entropy of `steps` Adam steps of `model` on one fixed batch, one loss per step (a model that
    learns lowers it)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
