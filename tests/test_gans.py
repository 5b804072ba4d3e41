"""GANs: the same contract for every family x architecture x image shape and for every quality option
(hinge loss, spectral norm, minibatch features), plus generators that use z, real/fake mixing, EMA,
DiffAugment and state round trips."""

import math

import pytest
import torch
from conftest import make_spec, real_batch, seeded
from torch import nn

from ganaug.augment.diffaugment import DIFFAUGMENT, diff_augment
from ganaug.config import ConfigError, TrialConfig
from ganaug.data.splits import load_data
from ganaug.data.tensors import balanced_labels, batch_indices, to_float
from ganaug.gan import networks as gans
from ganaug.gan import trainer
from ganaug.gan.losses import ADVERSARIAL_LOSSES, FAMILY_LOSSES
from ganaug.gan.networks import ARCHITECTURES, MINIBATCH_FEATURES, build_discriminator, build_generator
from ganaug.gan.trainer import GANTrainer, StateDictError

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)]
NUM_CLASSES = 4


def small_config(**changes):
    base = dict(gan_width=0.25, latent_dim=16, gan_lr=1e-3, batch_size=8)
    return TrialConfig(**{**base, **changes})




def check_contract(cfg, shape):
    """Shapes and ranges of G and D, finite detached losses, and D learning a fixed real/fake batch."""
    torch.manual_seed(0)
    spec = make_spec(*shape)
    gan = GANTrainer(cfg, spec, torch.device("cpu"))
    n = 6
    real_x, real_y = real_batch(spec, n)

    # G: shape and range.
    images = gan.G(torch.randn(n, cfg.latent_dim), real_y)
    assert images.shape == (n, *shape)
    assert images.min() >= -1 and images.max() <= 1
    samples = gan.sample(real_y, seeded(1))
    assert samples.shape == (n, *shape) and samples.min() >= -1 and samples.max() <= 1

    # D: one logit per image; the class head only for acgan.
    logit, class_logits = gan.D(real_x, real_y)
    assert logit.shape == (n,)
    if cfg.gan == "acgan":
        assert class_logits.shape == (n, NUM_CLASSES)
    else:
        assert class_logits is None

    # A few joint steps: finite, detached, 0-dim losses.
    for step in range(2):
        losses = gan.train_step(real_x, real_y, 0.5, seeded(step))
        assert set(losses) == {"d_loss", "g_loss"}
        for value in losses.values():
            assert value.dim() == 0 and not value.requires_grad and math.isfinite(value.item())

    # A short fit with G frozen: D's loss on a fixed real/fake batch goes down.
    d_losses = [gan.discriminator_step(real_x, real_y, 0.5, seeded(7)).item() for _ in range(20)]
    assert d_losses[-1] < 0.8 * d_losses[0], d_losses


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("family", list(FAMILY_LOSSES))
def test_gan_contract(family, arch, shape):
    check_contract(small_config(gan=family, gan_arch=arch), shape)


# Every quality option that is not a default, each on every family x architecture.
OPTIONS = {
    **{f"gan_loss={name}": {"gan_loss": name} for name in ADVERSARIAL_LOSSES if name != "bce"},
    **{f"d_minibatch={name}": {"d_minibatch": name} for name in MINIBATCH_FEATURES if name != "none"},
    "d_spectral_norm": {"d_spectral_norm": True},
    "acgan_light": {"acgan_weight": 0.2, "acgan_fake_class_loss": False},
}


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("family", list(FAMILY_LOSSES))
def test_gan_contract_with_quality_options(family, arch, option):
    check_contract(small_config(gan=family, gan_arch=arch, **OPTIONS[option]), (3, 32, 32) if arch == "dcgan"
                   else (1, 8, 8))


@pytest.fixture(scope="module")
def digits():
    return load_data({"name": "digits", "val_fraction": 0.2, "seed": 0})


def z_variation(gan, data, per_class=20):
    """Within-class pixel standard deviation of generated images (one mixed-class batch, as the classifier
    sees them) over that of the real images of the class, averaged over classes: 0 = G ignores z."""
    real = to_float(data.train_x)
    num_classes = data.spec.num_classes
    y = torch.arange(num_classes).repeat(per_class)
    fake = gan.sample(y, seeded(1))
    ratios = [fake[y == c].std(0).mean() / real[data.train_y == c].std(0).mean() for c in range(num_classes)]
    return torch.stack(ratios).mean().item()


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
@pytest.mark.parametrize("family", list(FAMILY_LOSSES))
def test_generator_output_varies_with_z_after_training(family, arch, digits):
    """The within-class collapse that made every search answer "no gain".

    G used to take the label as an embedding as large as z, concatenated to z; its first BatchNorm
    normalised mixed-class batches, so z and the label shared one unit of variance and D's push towards
    class-specific output crowded z out. Measured here with that design after the same 72 steps:
    z-variation 0.17 / 0.08 (mlp cgan / acgan) and 0.33 / 0.24 (dcgan), falling further with training.
    Conditional BatchNorm keeps it at 0.5-1.1.
    """
    torch.manual_seed(0)
    cfg = TrialConfig(gan=family, gan_arch=arch, gan_width=0.25, latent_dim=32, gan_lr=1e-3)
    gan = GANTrainer(cfg, digits.spec, torch.device("cpu"))
    rng = seeded(0)
    for _ in range(4):  # 4 passes of 18 batches
        for index in batch_indices(len(digits.train_y), 64, rng, "cpu"):
            gan.train_step(to_float(digits.train_x[index]), digits.train_y[index], 0.5, rng)
    assert z_variation(gan, digits) >= 0.45


def test_label_enters_the_generator_through_conditional_batchnorm_only():
    """z alone feeds the first layer; every normalised layer of G takes the label."""
    spec = make_spec(3, 32, 32)
    for arch in ARCHITECTURES:
        G = build_generator(arch, spec, 16, 0.25)
        first = next(m for m in G.modules() if isinstance(m, nn.Linear))
        assert first.in_features == 16, arch
        conditional = [m for m in G.modules() if isinstance(m, gans.ConditionalBatchNorm)]
        assert conditional, arch
        # Different labels, same z: different images (the label is used); same label, different z too.
        z = torch.randn(4, 16, generator=seeded(0))
        with torch.no_grad():
            for m in conditional:  # a random class-conditional affine, as after training
                m.gain.weight.normal_(1, 0.5, generator=seeded(1))
                m.bias.weight.normal_(0, 0.5, generator=seeded(2))
            by_label = G(z, torch.tensor([0, 1, 2, 3]))
            same_label = G(z, torch.zeros(4, dtype=torch.long))
        assert not torch.allclose(by_label, same_label)
        assert same_label.std(0).mean() > 0.01


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_spectral_norm_bounds_the_top_singular_value(arch):
    spec = make_spec(3, 32, 32)
    gan = GANTrainer(small_config(gan="cgan", gan_arch=arch, d_spectral_norm=True), spec, torch.device("cpu"))
    real_x, real_y = real_batch(spec, 8)
    for step in range(10):
        gan.train_step(real_x, real_y, 0.5, seeded(step))
    with torch.no_grad():  # one power iteration per training forward: let the estimate catch up with the last step
        for _ in range(30):
            gan.D(real_x, real_y)
    normalised = [m for m in gan.D.modules() if hasattr(m, "parametrizations")]
    assert len(normalised) >= 3
    for layer in normalised:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), 2).item()
        assert sigma == pytest.approx(1.0, abs=0.05), (layer, sigma)
    # Without the option (mlp, dcgan) D is not normalised; resnet always is (SNGAN).
    plain = GANTrainer(small_config(gan="cgan", gan_arch=arch), spec, torch.device("cpu"))
    assert any(hasattr(m, "parametrizations") for m in plain.D.modules()) == (arch == "resnet")


def test_hinge_loss_equals_hand_computed_values():
    logit, is_real = torch.tensor([0.5, -2.0, 0.3, -0.4]), torch.tensor([True, True, False, False])
    hinge = ADVERSARIAL_LOSSES["hinge"]
    d_loss = FAMILY_LOSSES["cgan"].discriminator_loss(logit, None, None, is_real, adversarial=hinge)
    # Real rows: max(0, 1 - 0.5) = 0.5, max(0, 1 + 2) = 3; fake rows: max(0, 1 + 0.3) = 1.3, max(0, 0.6) = 0.6.
    assert d_loss.item() == pytest.approx((0.5 + 3.0 + 1.3 + 0.6) / 4)
    g_loss = FAMILY_LOSSES["cgan"].generator_loss(logit[2:], None, None, adversarial=hinge)
    assert g_loss.item() == pytest.approx(-(0.3 - 0.4) / 2)
    # ACGAN adds the class cross-entropy to both players' hinge losses.
    class_logits, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    ce = nn.functional.cross_entropy(class_logits, y).item()
    acgan = FAMILY_LOSSES["acgan"].generator_loss(logit[2:], class_logits, y, adversarial=hinge)
    assert acgan.item() == pytest.approx(0.05 + ce)
    with pytest.raises(ConfigError, match="d_label_smoothing.*gan_loss='bce' only"):
        TrialConfig.from_dict({"gan_loss": "hinge", "d_label_smoothing": 0.1})


def test_acgan_class_loss_weight_and_real_rows_only_by_hand():
    logit, is_real = torch.zeros(4), torch.tensor([True, True, False, False])
    class_logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, -1.0]])
    y = torch.tensor([0, 1, 1, 0])
    ce = nn.functional.cross_entropy
    adversarial = math.log(2)  # bce at logit 0, target 1 or 0
    every_row = FAMILY_LOSSES["acgan"].discriminator_loss(logit, class_logits, y, is_real, class_weight=0.5)
    assert every_row.item() == pytest.approx(adversarial + 0.5 * ce(class_logits, y).item(), rel=1e-5)
    real_only = FAMILY_LOSSES["acgan"].discriminator_loss(logit, class_logits, y, is_real, class_weight=0.5,
                                                  class_on_fakes=False)
    assert real_only.item() == pytest.approx(adversarial + 0.5 * ce(class_logits[:2], y[:2]).item(), rel=1e-5)
    g_loss = FAMILY_LOSSES["acgan"].generator_loss(logit[2:], class_logits[2:], y[2:], class_weight=0.2)
    assert g_loss.item() == pytest.approx(adversarial + 0.2 * ce(class_logits[2:], y[2:]).item(), rel=1e-5)
    # CGAN has no class head: the options change nothing.
    assert FAMILY_LOSSES["cgan"].discriminator_loss(logit, None, y, is_real, class_weight=0.5).item() == pytest.approx(
        adversarial, rel=1e-5)


@pytest.mark.parametrize("minibatch", list(MINIBATCH_FEATURES))
def test_minibatch_features_tell_a_duplicated_batch_from_a_varied_one(minibatch):
    torch.manual_seed(0)
    spec = make_spec(1, 8, 8)
    D = build_discriminator("dcgan", spec, 0.25, conditional=True, aux_classes=0, minibatch=minibatch)
    varied = torch.rand(8, 1, 8, 8, generator=seeded(0)) * 2 - 1
    duplicated = varied[:1].expand(8, -1, -1, -1)
    y = torch.zeros(8, dtype=torch.long)
    with torch.no_grad():
        in_varied, in_duplicated = D(varied, y)[0][0], D(duplicated, y)[0][0]  # the same first image
    if minibatch == "none":
        assert torch.allclose(in_varied, in_duplicated)
    else:
        assert not torch.allclose(in_varied, in_duplicated, atol=1e-6)
        # Statistics stay within a group: the real rows' logits ignore what the fake rows look like.
        groups = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
        fakes_varied = torch.cat([varied[:4], varied[4:]])
        fakes_duplicated = torch.cat([varied[:4], varied[4:5].expand(4, -1, -1, -1)])
        with torch.no_grad():
            a = D(fakes_varied, y, groups=groups)[0][:4]
            b = D(fakes_duplicated, y, groups=groups)[0][:4]
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_acgan_class_head_learns_real_classes(arch):
    torch.manual_seed(0)
    spec = make_spec(1, 8, 8)
    gan = GANTrainer(small_config(gan="acgan", gan_arch=arch), spec, torch.device("cpu"))
    real_x, real_y = real_batch(spec, 16)

    def class_loss():
        return nn.functional.cross_entropy(gan.D(real_x, real_y)[1], real_y).item()

    before = class_loss()
    for _ in range(30):
        gan.discriminator_step(real_x, real_y, 0.75, seeded(3))
    assert class_loss() < 0.5 * before


class RecordingD(nn.Module):
    """Wraps D and keeps each forward's inputs (same parameters, so D's optimizer still applies)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x, y, groups=None):
        self.calls.append((x.detach().clone(), y.clone()))
        return self.inner(x, y, groups)


def count_real(x, real_x):
    matches = (x.flatten(1)[:, None, :] == real_x.flatten(1)[None, :, :]).all(dim=2)
    return int(matches.any(dim=1).sum()), matches


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
def test_discriminator_batch_holds_round_f_n_real_images(fraction):
    spec = make_spec(1, 8, 8)
    cfg = small_config(gan="cgan", d_steps=2)
    gan = GANTrainer(cfg, spec, torch.device("cpu"))
    gan.D = RecordingD(gan.D)
    n = 10  # 0.25 * 10 = 2.5 and 0.75 * 10 = 7.5: Python's round gives 2 and 8
    real_x, real_y = real_batch(spec, n)
    real_x = real_x + 0.01 * torch.arange(n).view(n, 1, 1, 1)  # every real image distinct
    gan.train_step(real_x, real_y, fraction, seeded(0))

    assert len(gan.D.calls) == cfg.d_steps + 1  # one D pass per D step (mixed batch) + the G step
    seen = []
    for x, y in gan.D.calls[: cfg.d_steps]:
        assert len(x) == n
        n_real, matches = count_real(x, real_x)
        assert n_real == round(fraction * n)
        rows, sources = matches.nonzero(as_tuple=True)
        assert torch.equal(y[rows], real_y[sources])  # real images keep their own labels
        # Fakes take the labels of the dropped real images: the label mix equals the real batch's.
        assert torch.equal(y.sort().values, real_y.sort().values)
        seen.append(set(sources.tolist()))
    assert seen[0] != seen[1]  # the second D step sees another slice of the batch
    generator_x, _ = gan.D.calls[-1]
    assert count_real(generator_x, real_x)[0] == 0


def test_ema_differs_from_g_and_sample_uses_it():
    torch.manual_seed(0)
    spec = make_spec(1, 8, 8)
    gan = GANTrainer(small_config(g_ema=0.9), spec, torch.device("cpu"))
    real_x, real_y = real_batch(spec, 8)
    for step in range(3):
        gan.train_step(real_x, real_y, 0.5, seeded(step))
    ema, live = dict(gan.G_ema.named_parameters()), dict(gan.G.named_parameters())
    assert any(not torch.allclose(ema[k], live[k]) for k in ema)
    for (name, ema_buffer), buffer in zip(gan.G_ema.named_buffers(), gan.G.buffers()):
        assert torch.equal(ema_buffer, buffer), name  # BN statistics are copied, not averaged

    y = balanced_labels(8, NUM_CLASSES, seeded(0))
    buffers_before = [b.clone() for b in gan.G_ema.buffers()]
    sampled = gan.sample(y, seeded(5))
    z = torch.randn(8, gan.latent_dim, generator=seeded(5))
    with trainer.sampling_mode(gan.G_ema, 8), torch.no_grad():
        from_ema = gan.G_ema(z, y)
    with trainer.sampling_mode(gan.G, 8), torch.no_grad():
        from_live = gan.G(z, y)
    assert torch.allclose(sampled, from_ema)
    assert not torch.allclose(sampled, from_live)
    assert all(torch.equal(a, b) for a, b in zip(buffers_before, gan.G_ema.buffers()))


def test_sample_leaves_running_statistics_alone_and_handles_one_label():
    spec = make_spec(1, 8, 8)
    gan = GANTrainer(small_config(), spec, torch.device("cpu"))
    before = [b.clone() for b in gan.G.buffers()]
    gan.sample(torch.arange(NUM_CLASSES))
    one = gan.sample(torch.tensor([2]))  # BatchNorm1d cannot use batch statistics for one image
    assert one.shape == (1, 1, 8, 8)
    assert all(torch.equal(a, b) for a, b in zip(before, gan.G.buffers()))
    assert gan.G.training


@pytest.mark.parametrize("family", list(FAMILY_LOSSES))
def test_state_dict_round_trip_gives_identical_samples_and_steps(family, tmp_path):
    torch.manual_seed(0)
    spec = make_spec(1, 8, 8)
    cfg = small_config(gan=family, gan_arch="dcgan", g_ema=0.5, diffaugment="color,translation,cutout")
    first = GANTrainer(cfg, spec, torch.device("cpu"))
    real_x, real_y = real_batch(spec, 8)
    for step in range(2):
        first.train_step(real_x, real_y, 0.5, seeded(step))
    torch.save(first.state_dict(), tmp_path / "gan.pt")

    torch.manual_seed(1)  # a different initialisation, overwritten by the load
    second = GANTrainer(cfg, spec, torch.device("cpu"))
    second.load_state_dict(torch.load(tmp_path / "gan.pt", weights_only=True))
    y = torch.arange(8) % NUM_CLASSES
    assert torch.equal(first.sample(y, seeded(9)), second.sample(y, seeded(9)))
    # Optimizer moments and the EMA counter came along too: the next step is identical.
    a = first.train_step(real_x, real_y, 0.5, seeded(4))
    b = second.train_step(real_x, real_y, 0.5, seeded(4))
    assert torch.equal(a["d_loss"], b["d_loss"]) and torch.equal(a["g_loss"], b["g_loss"])
    assert torch.equal(first.sample(y, seeded(9)), second.sample(y, seeded(9)))


def test_state_dict_from_another_config_is_a_clear_error():
    spec = make_spec(1, 8, 8)
    state = GANTrainer(small_config(gan_width=0.5), spec, torch.device("cpu")).state_dict()
    with pytest.raises(StateDictError, match="gan_width"):
        GANTrainer(small_config(gan_width=0.25), spec, torch.device("cpu")).load_state_dict(state)
    with pytest.raises(StateDictError, match="g_ema"):
        GANTrainer(small_config(g_ema=0.9), spec, torch.device("cpu")).load_state_dict(state)
    with pytest.raises(StateDictError, match="expected keys"):
        GANTrainer(small_config(), spec, torch.device("cpu")).load_state_dict({"G": {}})


def test_bad_inputs_raise_clear_errors():
    spec = make_spec(1, 8, 8)
    with pytest.raises(ConfigError, match="gan_arch='vit' is not one of mlp, dcgan, resnet"):
        build_generator("vit", spec, 16, 1.0)
    with pytest.raises(ConfigError, match="dcgan.*7x7"):
        build_discriminator("dcgan", make_spec(1, 7, 7), 1.0, conditional=True, aux_classes=0)
    with pytest.raises(ConfigError, match="unknown part 'flip'.*color, translation, cutout"):
        diff_augment(torch.zeros(2, 1, 8, 8), "color,flip")
    gan = GANTrainer(small_config(), spec, torch.device("cpu"))
    with pytest.raises(TypeError, match="float"):
        gan.train_step(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), 0.5)
    with pytest.raises(ValueError, match="at least 2"):
        gan.train_step(torch.zeros(1, 1, 8, 8), torch.zeros(1, dtype=torch.long), 0.5)


def test_discriminator_loss_matches_hand_computed_bce_with_one_sided_smoothing():
    logit, is_real = torch.tensor([2.0, -1.0]), torch.tensor([True, False])
    loss = FAMILY_LOSSES["cgan"].discriminator_loss(logit, None, torch.tensor([0, 1]), is_real, real_target=0.9,
                                           adversarial=ADVERSARIAL_LOSSES["bce"])
    sigmoid_2, sigmoid_m1 = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))
    real_term = -(0.9 * math.log(sigmoid_2) + 0.1 * math.log(1 - sigmoid_2))
    fake_term = -math.log(1 - sigmoid_m1)  # fake target stays 0: smoothing is one-sided
    assert loss.item() == pytest.approx((real_term + fake_term) / 2, rel=1e-5)
    g_loss = FAMILY_LOSSES["cgan"].generator_loss(logit, None, None)
    assert g_loss.item() == pytest.approx(-(math.log(sigmoid_2) + math.log(sigmoid_m1)) / 2, rel=1e-5)


def test_train_step_under_bf16_autocast():
    spec = make_spec(1, 8, 8)
    for arch in ARCHITECTURES:
        gan = GANTrainer(small_config(gan="acgan", gan_arch=arch, diffaugment="color,translation"), spec,
                  torch.device("cpu"))
        real_x, real_y = real_batch(spec, 8)
        losses = gan.train_step(real_x, real_y, 0.5, seeded(0),
                                autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        assert all(math.isfinite(v.item()) for v in losses.values())


def test_balanced_labels_are_balanced():
    y = balanced_labels(23, 5, seeded(0))
    counts = torch.bincount(y, minlength=5)
    assert counts.sum() == 23 and counts.max() - counts.min() <= 1


@pytest.mark.parametrize("part", list(DIFFAUGMENT))
def test_diffaugment_keeps_shape_and_range_and_is_differentiable(part):
    x = (torch.rand(6, 3, 32, 32, generator=seeded(0)) * 2 - 1).requires_grad_(True)
    out = diff_augment(x, part, seeded(1))
    assert out.shape == x.shape
    assert out.min() >= -1 and out.max() <= 1
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.equal(out, diff_augment(x, part, seeded(1)))  # reproducible from the generator


def test_translation_moves_pixels_and_empty_policy_is_identity():
    x = torch.rand(8, 1, 32, 32, generator=seeded(0)) * 2 - 1
    moved = diff_augment(x, "translation", seeded(2))
    assert not torch.equal(moved, x)
    # Some image is an exact shifted copy (content moved, not changed).
    assert any(torch.equal(moved[i, :, 8:24, 8:24], x[i, :, 8 + dy:24 + dy, 8 + dx:24 + dx])
               for i in range(8) for dy in range(-4, 5) for dx in range(-4, 5) if (dy, dx) != (0, 0))
    assert diff_augment(x, "") is x
