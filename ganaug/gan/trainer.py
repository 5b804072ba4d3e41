"""The trainer of the cgan and acgan families: `GANTrainer` bundles G, D, an optional EMA of G and both Adam optimizers
(networks and losses from networks.py and losses.py, DiffAugment on every D input), and takes the joint loop's steps:

    gan = GANTrainer(TrialConfig(gan="acgan", gan_arch="dcgan"), data.spec, device)
    losses = gan.train_step(real_x, real_y, real_fraction=0.5)      # d_steps D steps + one G step
    images = gan.sample(balanced_labels(64, data.spec.num_classes))  # float in [-1, 1], NCHW

The other families (ali.py, conditions.py, translation.py) train through its steps and override its seams:
`networks` (G and D), `condition` (what G is conditioned on), `fakes_for` (discriminator_step's fakes, their codes
and which of them the real/fake loss judges), `real_codes` (codes a joint D reads beside real images),
`active_discriminator` (the D, optimizer and family loss a step uses), `generator_update` (the G side of
train_step; generator_step takes labels, codes, a judged mask and an extra loss term), `check_batch`, `min_batch`,
`min_real`, `predicts` and `family_loss`; and they share its helpers `descend`, `frozen`, `sampling_mode`,
`optimizer_for` and `sampling_generator`.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from ganaug.augment import diff_augment
from ganaug.config import ConfigError, TrialConfig, policy_parts
from ganaug.data import balanced_labels
from ganaug.errors import InputError
from ganaug.gan.losses import ADVERSARIAL_LOSSES, FAMILY_LOSSES, FamilyLoss
from ganaug.gan.networks import build_discriminator, build_generator


class StateDictError(InputError):
    """A GAN state dict does not fit the GAN built from the current config."""


def descend(loss: torch.Tensor, *optimizers: torch.optim.Optimizer) -> torch.Tensor:
    """One gradient step of each optimizer on `loss` (their networks' grads cleared first); `loss` detached."""
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for optimizer in optimizers:
        optimizer.step()
    return loss.detach()


@contextlib.contextmanager
def frozen(network: nn.Module):
    """Gradients flow through `network` to the player behind it without filling the network's own .grad."""
    network.requires_grad_(False)
    try:
        yield
    finally:
        network.requires_grad_(True)


@contextlib.contextmanager
def sampling_mode(G: nn.Module, batch_size: int):
    """Batch statistics without touching the running statistics (batches of one: running statistics).

    Why batch statistics: G always trains in train mode, so these are the activations D has
    judged; running statistics lag the fast-moving weights early in training (washed-out
    samples), and for the EMA generator they belong to the live G's weights, not the EMA's.
    """
    was_training = G.training
    norms = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tracked = [m.track_running_stats for m in norms]
    if batch_size > 1:
        G.train()
        for m in norms:
            m.track_running_stats = False  # train mode + untracked: batch stats, buffers left alone
    else:
        G.eval()  # BatchNorm1d cannot normalise a batch of one
    try:
        yield
    finally:
        for m, was_tracked in zip(norms, tracked):
            m.track_running_stats = was_tracked
        G.train(was_training)


class Fakes(NamedTuple):
    """discriminator_step's fake rows: images, their labels, the codes G drew them from (None: made otherwise, as
    translation's), and which of them the real/fake loss judges (bool; None: every one)."""

    x: torch.Tensor
    y: torch.Tensor
    codes: torch.Tensor | None = None
    judged: torch.Tensor | None = None


class GANTrainer:
    """G, D, optional EMA of G, their Adam optimizers (optimizer_for) and the family loss, for one trial.

    `device` must hold the batches and any torch.Generator passed to the methods.
    """

    labelled = True  # a synthetic source (trial.sources) whose images are of the classes they were asked for

    def __init__(self, cfg: TrialConfig, spec, device: torch.device, data=None):
        # data: the trial's ImageData, which families.build_gan hands every trainer; cgan and acgan need none.
        family = self.family_loss or cfg.gan
        if family not in FAMILY_LOSSES:
            raise ConfigError(f"gan={cfg.gan!r} is not one of {', '.join(FAMILY_LOSSES)}")
        self.cfg = cfg
        self.device = torch.device(device)
        self.num_classes = spec.num_classes
        self.latent_dim = cfg.latent_dim
        self.loss = FAMILY_LOSSES[family]
        # acgan: D also learns the classes of fakes (Odena 2017), unless the config says real ones only.
        self.class_on_fakes = cfg.acgan_fake_class_loss
        self.adversarial = ADVERSARIAL_LOSSES[cfg.gan_loss]
        self.diffaugment = ",".join(policy_parts(cfg.diffaugment))  # validated once, not per step
        self.G, self.D = (network.to(self.device) for network in self.networks(spec))
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False) if cfg.g_ema > 0 else None
        self.ema_updates = 0
        self.opt_G, self.opt_D = self.optimizer_for(self.G), self.optimizer_for(self.D)

    def optimizer_for(self, network: nn.Module) -> torch.optim.Adam:
        """Adam(lr=cfg.gan_lr, betas=(cfg.gan_beta1, 0.999)) over the network's parameters: every player's optimizer."""
        # fused: one kernel updates every parameter (see classifier.recipe.build_optimizer).
        return torch.optim.Adam(network.parameters(), lr=self.cfg.gan_lr, betas=(self.cfg.gan_beta1, 0.999), fused=True)

    def networks(self, spec, predictions: int = 0) -> tuple[nn.Module, nn.Module]:
        """G and D of this config (the seam a variant such as conditions.ConditionedTrainer extends; translation's G
        is a translator, so the seam's types are any modules)."""
        cfg = self.cfg
        G = build_generator(cfg.gan_arch, spec, cfg.latent_dim, cfg.gan_width)
        D = build_discriminator(
            cfg.gan_arch, spec, cfg.gan_width, conditional=self.loss.conditional_d,
            aux_classes=spec.num_classes if self.loss.aux_weight > 0 else 0,
            spectral_norm=cfg.d_spectral_norm, minibatch=cfg.d_minibatch, predictions=predictions,
        )
        return G, D

    def noise(self, n: int, rng: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=self.device, generator=rng)

    def train_step(self, real_x: torch.Tensor, real_y: torch.Tensor, real_fraction: float,
                   rng: torch.Generator | None = None,
                   autocast: Callable = contextlib.nullcontext) -> dict[str, torch.Tensor]:
        """cfg.d_steps discriminator steps, one generator step, the EMA update.

        real_x: float [n, C, H, W] in [-1, 1] on the GAN's device; real_y: int64 [n].
        Returns 0-dim detached {"d_loss" (mean over the D steps), "g_loss"}; never syncs.
        """
        self.check_batch(real_x, real_fraction)
        d_losses = [
            self.discriminator_step(real_x, real_y, real_fraction, rng, autocast, offset=step)
            for step in range(self.cfg.d_steps)
        ]
        losses = self.generator_update(real_x, real_y, rng, autocast)
        self.update_ema()
        return {"d_loss": torch.stack(d_losses).mean(), **losses}

    # Smallest batch train_step takes: BatchNorm in G needs two images (instance norm, as translation's, one).
    min_batch = 2
    # Fewest real images in a D batch (a family whose class loss needs real rows raises it to 1).
    min_real = 0
    # Whether D has a predictor head, whose outputs discriminator_predictor_loss and generator_predictor_loss
    # turn into losses (conditions.ConditionedTrainer: continuous attributes beside the class).
    predicts = False
    # The FAMILY_LOSSES entry of a family that is not itself in it (translation, ALI's ACGAN phase): None = cfg.gan.
    family_loss: str | None = None

    def check_batch(self, real_x: torch.Tensor, real_fraction: float) -> None:
        """train_step's input checks, with the trainer's class name in each message."""
        name = type(self).__name__
        if not real_x.is_floating_point():
            raise TypeError(f"{name}.train_step: real_x must be float images in [-1, 1], got {real_x.dtype}")
        if len(real_x) < self.min_batch:
            why = " (BatchNorm in G)" if self.min_batch > 1 else ""
            raise ValueError(f"{name}.train_step needs batches of at least {self.min_batch} image(s){why}, "
                             f"got {len(real_x)}")
        if not 0 <= real_fraction <= 1:
            raise ValueError(f"{name}.train_step: real_fraction={real_fraction!r}; valid: 0 <= real_fraction <= 1")

    def generator_update(self, real_x: torch.Tensor, real_y: torch.Tensor, rng: torch.Generator | None = None,
                         autocast: Callable = contextlib.nullcontext) -> dict[str, torch.Tensor]:
        """train_step's G side: {"g_loss"} of one generator step; a family may return its own losses beside it."""
        return {"g_loss": self.generator_step(len(real_x), rng, autocast)}

    def epoch_metrics(self) -> dict[str, float]:
        """A family's own figures, reported once an epoch beside the shared quality metrics; none here."""
        return {}

    def discriminator_step(self, real_x: torch.Tensor, real_y: torch.Tensor, real_fraction: float,
                           rng: torch.Generator | None = None,
                           autocast: Callable = contextlib.nullcontext, offset: int = 0) -> torch.Tensor:
        """One D update on a batch of len(real_x) images, round(real_fraction * n) of them real.

        The real share is a slice of real_x (rotated by `offset` slices, so that successive D steps
        on one batch see different real images); its dropped slots are filled with fakes conditioned
        on the dropped images' labels. Reusing those labels keeps the label mix of real and fake
        rows identical, so a label-conditioned D cannot tell real from fake by the label alone
        (uniform fake labels on imbalanced data would mark minority labels as fake). The active D
        judges the images, or (image, code) pairs when real_codes gives codes (a joint D).
        """
        n = len(real_x)
        n_real = min(max(round(real_fraction * n), self.min_real), n)
        shift = (offset * n_real) % n
        if shift:
            real_x, real_y = real_x.roll(-shift, 0), real_y.roll(-shift, 0)
        # Which row of the given batch each row now is: only a family with per-row conditions (predicts) needs it.
        rows = torch.arange(n, device=real_x.device).roll(-shift, 0) if self.predicts else None
        _, optimizer, family = self.active_discriminator()
        with torch.no_grad(), autocast():
            real_codes = self.real_codes(real_x[:n_real])
            fake = self.fakes_for(real_x[n_real:], real_y[n_real:], rng,
                                  rows[n_real:] if rows is not None else None)
        labels = torch.cat([real_y[:n_real], fake.y])
        with autocast():
            images = diff_augment(torch.cat([real_x[:n_real], fake.x]), self.diffaugment, rng)
            d_input: torch.Tensor | tuple[torch.Tensor, torch.Tensor] = images
            if real_codes is not None:  # a joint D judges (image, code) pairs
                assert fake.codes is not None, "a joint D's fakes carry the codes they were drawn from"
                d_input = (images, torch.cat([real_codes, fake.codes.to(real_codes.dtype)]))
            is_real = torch.arange(n, device=real_x.device) < n_real
            judged = torch.cat([is_real[:n_real], fake.judged]) if fake.judged is not None else None
            # One pass over the mixed batch; minibatch features compare real rows with real rows only.
            logit, class_logits, *predicted = self.judge(d_input, labels, groups=is_real.long())
            loss = family.discriminator_loss(
                logit, class_logits, labels, is_real, real_target=1.0 - self.cfg.d_label_smoothing,
                adversarial=self.adversarial, class_weight=self.cfg.acgan_weight, class_on_fakes=self.class_on_fakes,
                judged=judged,
            )
            if rows is not None:  # self.predicts
                loss = loss + self.discriminator_predictor_loss(predicted[0], is_real, rows)
        return descend(loss, optimizer)

    def discriminator_predictor_loss(self, predicted: torch.Tensor, is_real: torch.Tensor,
                                     rows: torch.Tensor) -> torch.Tensor:
        """A D step's loss on D's predicted attributes of the batch's `rows`: only a family that `predicts` has one."""
        raise NotImplementedError(f"{type(self).__name__} does not predict attributes (predicts is False)")

    def generator_predictor_loss(self, predicted: torch.Tensor, condition) -> torch.Tensor:
        """A G step's loss on D's predicted attributes of fakes made under `condition` (a family that `predicts`)."""
        raise NotImplementedError(f"{type(self).__name__} does not predict attributes (predicts is False)")

    def active_discriminator(self) -> tuple[nn.Module, torch.optim.Optimizer, FamilyLoss]:
        """The D that the steps train and judge with, its optimizer and its family loss: D, opt_D and the family's
        (ali.ALITrainer's first phase: its joint D)."""
        return self.D, self.opt_D, self.loss

    def judge(self, x: torch.Tensor | tuple[torch.Tensor, torch.Tensor], y: torch.Tensor,
              **groups) -> tuple[torch.Tensor, ...]:
        """The active D's outputs on x: (real/fake logit, class logits), and the predicted attributes when D predicts
        them."""
        D = self.active_discriminator()[0]
        return D(x, y, **groups, with_predictions=True) if self.predicts else D(x, y, **groups)

    def real_codes(self, real_x: torch.Tensor) -> torch.Tensor | None:
        """The codes a joint D reads beside discriminator_step's real images (ALI: E(x)); None: D reads images only."""
        return None

    def condition(self, y: torch.Tensor, rng: torch.Generator | None = None,
                  rows: torch.Tensor | None = None):
        """What G is conditioned on for labels y: the labels themselves. (conditions.ConditionedTrainer adds
        attributes: those of the real batch's `rows` in a D step, drawn per class for fresh fakes.)"""
        return y

    def fakes_for(self, dropped_x: torch.Tensor, dropped_y: torch.Tensor, rng: torch.Generator | None = None,
                  rows: torch.Tensor | None = None) -> Fakes:
        """discriminator_step's fakes for the real rows it dropped (`rows` of the batch): G's images from N(0, 1)
        codes, conditioned as those rows were, with their labels and codes (a family that makes fakes otherwise,
        from the dropped images themselves or from other codes, overrides this)."""
        n = len(dropped_y)
        if n == 0:  # no fakes, and no codes to pair them with
            return Fakes(dropped_x, dropped_y, codes=torch.zeros(0, self.latent_dim, device=self.device))
        # A single fake would break BatchNorm1d's batch statistics: draw two, keep one.
        repeat = 1 if n > 1 else 2
        y, rows = dropped_y.repeat(repeat), (rows.repeat(repeat) if rows is not None else None)
        z = self.noise(len(y), rng)
        return Fakes(self.G(z, self.condition(y, rng, rows))[:n], dropped_y, codes=z[:n])

    def generator_step(self, n: int, rng: torch.Generator | None = None,
                       autocast: Callable = contextlib.nullcontext, y: torch.Tensor | None = None,
                       codes: torch.Tensor | None = None, judged: torch.Tensor | None = None,
                       extra_loss: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """One G update on n fresh fakes (non-saturating bce, or hinge): class-balanced labels and N(0, 1) codes
        unless y and codes are given (ALI's ACGAN phase: the real batch's labels and mixed codes); the real/fake
        loss on the `judged` rows (bool; None: every row); plus extra_loss(fakes) when given."""
        if y is None:
            y = balanced_labels(n, self.num_classes, rng, self.device)
        condition = self.condition(y, rng)
        if codes is None:
            codes = self.noise(n, rng)
        D, _, family = self.active_discriminator()
        with frozen(D):
            with autocast():
                fake = self.G(codes, condition)
                logit, class_logits, *predicted = self.judge(diff_augment(fake, self.diffaugment, rng), y)
                loss = family.generator_loss(logit, class_logits, y, adversarial=self.adversarial,
                                             class_weight=self.cfg.acgan_weight, judged=judged)
                if self.predicts:
                    loss = loss + self.generator_predictor_loss(predicted[0], condition)
                if extra_loss is not None:
                    loss = loss + extra_loss(fake)
            return descend(loss, self.opt_G)

    @torch.no_grad()
    def update_ema(self) -> None:
        """G_ema <- decay * G_ema + (1 - decay) * G; BN buffers copied.

        The decay ramps up as min(g_ema, (1 + t) / (10 + t)) so that early samples follow G instead
        of lingering near the random initialisation.
        """
        if self.G_ema is None:
            return
        self.ema_updates += 1
        decay = min(self.cfg.g_ema, (1 + self.ema_updates) / (10 + self.ema_updates))
        torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1.0 - decay)
        for ema_buffer, buffer in zip(self.G_ema.buffers(), self.G.buffers()):
            ema_buffer.copy_(buffer)

    @torch.no_grad()
    def sample(self, y: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        """Images in [-1, 1] for labels y, from G_ema when enabled else G; noise from `rng`.

        Uses batch statistics (see sampling_mode), so an image depends on its batch; running
        statistics are never updated.
        """
        G = self.sampling_generator
        with sampling_mode(G, len(y)):
            return G(self.noise(len(y), rng), y.to(self.device))

    @property
    def sampling_generator(self) -> nn.Module:
        """The generator that samples: G_ema when enabled, else G."""
        return self.G_ema if self.G_ema is not None else self.G

    @torch.no_grad()
    def scored(self, y: torch.Tensor, rng: torch.Generator | None = None,
               autocast: Callable = contextlib.nullcontext) -> tuple[torch.Tensor, torch.Tensor]:
        """sample(y, rng) and, under `autocast`, class_scores of those images: filter_candidates' draw when the trial
        has no teacher (trial.sources' interface)."""
        x = self.sample(y, rng)
        with autocast():
            return x, self.class_scores(x, y)

    def class_scores(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """ACGAN: D's auxiliary-head probability of class y for each image (filter_candidates' scorer when the
        trial has no teacher); CGAN has no class head."""
        _, class_logits = self.D(x, y)
        if class_logits is None:
            raise ConfigError(f"gan={self.cfg.gan!r} has no auxiliary class head to score samples with")
        return torch.softmax(class_logits.float(), dim=1).gather(1, y[:, None]).squeeze(1)

    def state_dict(self) -> dict:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "ema_updates": self.ema_updates,
        }

    def load_state_dict(self, state: dict) -> None:
        expected = {"G", "D", "G_ema", "opt_G", "opt_D", "ema_updates"}
        if not isinstance(state, dict) or set(state) != expected:
            found = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise StateDictError(f"GAN state: expected keys {sorted(expected)}, found {found}")
        if (state["G_ema"] is None) != (self.G_ema is None):
            has = "lacks" if state["G_ema"] is None else "has"
            raise StateDictError(
                f"GAN state: g_ema={self.cfg.g_ema} but the state {has} an EMA generator; "
                f"resume with the g_ema the state was saved with"
            )
        parts = {"G": self.G, "D": self.D, "G_ema": self.G_ema, "opt_G": self.opt_G, "opt_D": self.opt_D}
        present = {name: part for name, part in parts.items() if part is not None}
        self.load_parts(present, state, f"gan={self.cfg.gan!r}")
        self.ema_updates = int(state["ema_updates"])

    def load_parts(self, parts: dict, state: dict, family: str) -> None:
        """Each network's or optimizer's load_state_dict(state[name]); a state of other shapes (another
        architecture, width, latent size or dataset) ends in one StateDictError that names the config."""
        try:
            for name, part in parts.items():
                part.load_state_dict(state[name])
        except (RuntimeError, ValueError, KeyError) as error:
            raise StateDictError(
                f"GAN state does not fit {family}, gan_arch={self.cfg.gan_arch!r}, gan_width={self.cfg.gan_width}, "
                f"latent_dim={self.cfg.latent_dim} and this dataset's shape/classes: {str(error).splitlines()[0]}"
            ) from None
