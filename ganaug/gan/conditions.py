"""Continuous conditions (`gan_conditions`): a cgan or acgan whose generator also takes continuous attributes of
each image (attributes.csv columns, e.g. a galaxy's distance and mass) and whose discriminator regresses them
with a predictor head, as in the galaxy report's cGAN.

    cfg = TrialConfig(gan="cgan", gan_conditions="distance,mass", synthetic_ratio=0.5)
    gan = build_gan(cfg, data.spec, device, data)       # data.train_attributes: the rows to draw from
    images = gan.sample(y, rng)                         # attributes drawn from class y's training rows
    images = gan.sample(y, rng, attributes=a)           # or asked for, [n, k] in the data's units

How attributes enter G: like the label, through the conditional BatchNorm layers (never concatenated to z,
see ganaug.gan.networks for why): every ConditionalBatchNorm of the architecture becomes an AttributeBatchNorm,
whose per-class gain and bias get a linear map of the attributes added. The maps start at zero, so an untrained
conditioned G is the unconditioned one. Attributes are standardised with the training split's mean and std.

The predictor losses (the report's): D adds lambda * max(0, l2(real) - l2(fake)), G adds lambda * l2(fake), where
l2 is the predictor head's mean squared error on the real rows against their attributes, or on the fake rows
against the attributes they were conditioned on, and lambda = predictor_weight. D's fakes reuse the dropped real
rows' labels and attributes (as GANTrainer does with labels), so their mix never gives fakes away.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ganaug.config import ConfigError, TrialConfig, condition_names
from ganaug.data import ClassIndex, balanced_labels, check_attribute_columns
from ganaug.gan.losses import masked_mean
from ganaug.gan.networks import ConditionalBatchNorm
from ganaug.gan.trainer import GANTrainer, StateDictError, sampling_mode


class AttributeBatchNorm(nn.Module):
    """A ConditionalBatchNorm whose gain and bias also follow k continuous attributes through linear maps.

    forward(x, (y int64 [B], attributes float [B, k])). Holds the wrapped layer's norm / gain / bias under the
    same names, so its state dict keys are those of the ConditionalBatchNorm plus attribute_gain / attribute_bias.
    """

    takes_labels = True

    def __init__(self, conditional: ConditionalBatchNorm, attributes: int):
        super().__init__()
        self.norm, self.gain, self.bias = conditional.norm, conditional.gain, conditional.bias
        features = conditional.gain.embedding_dim
        self.attribute_gain = nn.Linear(attributes, features, bias=False)
        self.attribute_bias = nn.Linear(attributes, features, bias=False)
        nn.init.zeros_(self.attribute_gain.weight)  # start as the class-only layer
        nn.init.zeros_(self.attribute_bias.weight)

    def forward(self, x: torch.Tensor, condition: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        y, attributes = condition
        shape = (len(y), -1) + (1,) * (x.dim() - 2)
        gain = self.gain(y) + self.attribute_gain(attributes.to(self.attribute_gain.weight.dtype))
        bias = self.bias(y) + self.attribute_bias(attributes.to(self.attribute_bias.weight.dtype))
        return self.norm(x) * gain.view(shape).to(x.dtype) + bias.view(shape).to(x.dtype)


def condition_generator(G: nn.Module, attributes: int) -> nn.Module:
    """G with every ConditionalBatchNorm replaced by an AttributeBatchNorm (in place; G is returned).

    G then takes (y, attributes) wherever it took y: Conditioned and the resnet blocks hand the condition on as is.
    """
    replaced = 0
    for parent in list(G.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ConditionalBatchNorm):
                setattr(parent, name, AttributeBatchNorm(child, attributes))
                replaced += 1
    if replaced == 0:
        raise ConfigError("gan_conditions: this generator has no conditional BatchNorm to take the attributes; "
                          "valid: a gan_arch whose generator uses ConditionalBatchNorm (mlp, dcgan, resnet)")
    return G


class ConditionedTrainer(GANTrainer):
    """GANTrainer conditioned on continuous attributes besides the class; D has a predictor head (module docstring).

    train_step takes the real batch's attribute rows too (real_attributes: rows of data.train_attributes, every
    column; the gan_conditions columns are picked here). The standardisation and the per-class attribute rows
    that sampling draws from are part of state_dict, so a GAN loaded from a checkpoint samples without the data.
    """

    def __init__(self, cfg: TrialConfig, spec, device: torch.device, data=None):
        self.condition_names = condition_names(cfg.gan_conditions)
        available = tuple(getattr(spec, "attribute_names", ()))
        if not self.condition_names:
            raise ConfigError(f"gan_conditions={cfg.gan_conditions!r} names no attribute column; valid: the columns of "
                              f"the dataset's attributes.csv ({', '.join(available) or 'it has none'})")
        check_attribute_columns(cfg.gan_conditions, available, where=f"gan_conditions={cfg.gan_conditions!r}")
        self.columns = [available.index(name) for name in self.condition_names]
        # The standardised attributes of the batch train_step is working on.
        self._real_attributes: torch.Tensor | None = None
        super().__init__(cfg, spec, device, data)
        k = len(self.columns)
        # Standardisation, each training row's standardised attributes and the training rows by class.
        self.attribute_mean = torch.zeros(k, device=self.device)
        self.attribute_std = torch.ones(k, device=self.device)
        self.attribute_rows = torch.zeros(0, k, device=self.device)
        self.attribute_classes = ClassIndex(torch.zeros(0, dtype=torch.long, device=self.device), self.num_classes)
        if data is not None:
            self._fit_attributes(data.train_attributes, data.train_y)

    def networks(self, spec, predictions: int = 0):
        G, D = super().networks(spec, predictions=len(self.columns))
        return condition_generator(G, len(self.columns)), D

    def _fit_attributes(self, attributes: torch.Tensor, y: torch.Tensor) -> None:
        values = attributes[:, self.columns].to(self.device, torch.float32)
        if len(values) == 0:
            raise ConfigError("gan_conditions: the training split has no images to take attributes from")
        self.attribute_mean = values.mean(0)
        # A constant column has std 0: dividing by 1 instead leaves it all zeros, which G then ignores.
        std = values.std(0, unbiased=False)
        self.attribute_std = torch.where(std > 1e-8, std, torch.ones_like(std))
        self.attribute_rows = (values - self.attribute_mean) / self.attribute_std
        self.attribute_classes = ClassIndex(y.to(self.device), self.num_classes)

    def standardise(self, attributes: torch.Tensor) -> torch.Tensor:
        """[n, k] attributes in the data's units (the gan_conditions columns, in that order) -> standardised."""
        return (attributes.to(self.device, torch.float32) - self.attribute_mean) / self.attribute_std

    def draw_attributes(self, y: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        """Standardised attributes [n, k] for labels y: a random training row of class y each (any class's row for
        a class without training images)."""
        if len(self.attribute_rows) == 0:
            raise ConfigError("gan_conditions: no attribute rows to draw from; build the GAN with the trial's data "
                              "or load a state_dict saved by one")
        return self.attribute_rows[self.attribute_classes.row_of_class(y, rng)]

    # ------------------------------------------------------------------------------------------
    # Training: GANTrainer's steps, through its seams: condition (attributes beside the labels) and the predictor
    # losses (predicts = True).

    predicts = True

    def train_step(self, real_x: torch.Tensor, real_y: torch.Tensor, real_fraction: float,
                   rng: torch.Generator | None = None, autocast: Callable = contextlib.nullcontext,
                   real_attributes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """GANTrainer.train_step; real_attributes: the batch's rows of data.train_attributes (all columns)."""
        if real_attributes is None or len(real_attributes) != len(real_x):
            raise ValueError(f"gan_conditions={self.cfg.gan_conditions!r}: train_step needs real_attributes, the "
                             "batch's rows of data.train_attributes (one per image)")
        with self._batch(self.standardise(real_attributes[:, self.columns])):
            return super().train_step(real_x, real_y, real_fraction, rng, autocast)

    def discriminator_step(self, real_x: torch.Tensor, real_y: torch.Tensor, real_fraction: float,
                           rng: torch.Generator | None = None, autocast: Callable = contextlib.nullcontext,
                           offset: int = 0, real_attributes: torch.Tensor | None = None) -> torch.Tensor:
        """GANTrainer.discriminator_step, its fakes conditioned on the dropped rows' attributes too, plus
        lambda * max(0, l2(real) - l2(fake)); real_attributes standardised (default: those train_step works on)."""
        with self._batch(real_attributes if real_attributes is not None else self._real_attributes):
            return super().discriminator_step(real_x, real_y, real_fraction, rng, autocast, offset)

    @contextlib.contextmanager
    def _batch(self, attributes: torch.Tensor | None):
        """The standardised attributes of the real batch the steps inside the block work on."""
        previous, self._real_attributes = self._real_attributes, attributes
        try:
            yield
        finally:
            self._real_attributes = previous

    def condition(self, y: torch.Tensor, rng: torch.Generator | None = None,
                  rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels, standardised attributes): the real batch's attributes of `rows` in a D step (the dropped real
        rows the fakes stand in for), else drawn from class y's training rows."""
        return y, (self.batch_attributes()[rows] if rows is not None else self.draw_attributes(y, rng))

    def batch_attributes(self) -> torch.Tensor:
        """The real batch's standardised attributes (set by train_step or discriminator_step)."""
        if self._real_attributes is None:
            raise ValueError("discriminator_step needs the real batch's standardised attributes (real_attributes)")
        return self._real_attributes

    def discriminator_predictor_loss(self, predicted: torch.Tensor, is_real: torch.Tensor,
                                     rows: torch.Tensor) -> torch.Tensor:
        """lambda * max(0, l2(real) - l2(fake)): every row is compared with the attributes of the real row it holds
        or stands in for, and D is asked to predict them on real images better than on fakes."""
        error = (predicted.float() - self.batch_attributes()[rows]).square().mean(1)
        return self.cfg.predictor_weight * F.relu(masked_mean(error, is_real) - masked_mean(error, ~is_real))

    def generator_predictor_loss(self, predicted: torch.Tensor, condition) -> torch.Tensor:
        """lambda * l2(fake): G's images should carry the attributes they were conditioned on, as D reads them."""
        _, attributes = condition
        return self.cfg.predictor_weight * (predicted.float() - attributes).square().mean()

    # ------------------------------------------------------------------------------------------
    # Sampling and the condition metric.

    @torch.no_grad()
    def sample(self, y: torch.Tensor, rng: torch.Generator | None = None,
               attributes: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [-1, 1] for labels y and attributes [n, k] in the data's units (the gan_conditions columns),
        drawn from class y's training rows when None; G_ema when enabled, batch statistics (GANTrainer.sample)."""
        y = y.to(self.device)
        standardised = self.draw_attributes(y, rng) if attributes is None else self.standardise(attributes)
        G = self.sampling_generator
        with sampling_mode(G, len(y)):
            return G(self.noise(len(y), rng), (y, standardised))

    def epoch_metrics(self) -> dict[str, float]:
        """condition_error on min(1000, 50 per class) synthetic images, from its own seed: measuring never changes
        what training draws, and epochs compare."""
        rng = torch.Generator(self.device).manual_seed(self.cfg.seed + 54322)
        return {"condition_error": self.condition_error(min(1000, 50 * self.num_classes), rng)}

    @torch.no_grad()
    def condition_error(self, n: int, rng: torch.Generator | None = None) -> float:
        """The predictor head's mean squared error on n fresh synthetic images against the attributes they were
        conditioned on, in standardised units (0 = G follows the attributes as D reads them; ~1 = ignores them)."""
        y = balanced_labels(n, self.num_classes, rng, self.device)
        attributes = self.draw_attributes(y, rng)
        G = self.sampling_generator
        with sampling_mode(G, len(y)):
            fake = G(self.noise(n, rng), (y, attributes))
        was_training = self.D.training
        self.D.eval()  # spectral norm's power iteration must not advance while measuring
        try:
            _, _, predicted = self.D(fake, y, with_predictions=True)
        finally:
            self.D.train(was_training)
        return (predicted.float() - attributes).square().mean().item()

    # ------------------------------------------------------------------------------------------
    # State: GANTrainer's plus the attribute statistics: the standardisation and the attribute rows in class order
    # (class y's are `count[y]` rows from `start[y]`).

    def state_dict(self) -> dict:
        classes = self.attribute_classes
        return {**super().state_dict(), "conditions": {
            "mean": self.attribute_mean, "std": self.attribute_std, "rows": self.attribute_rows[classes.order],
            "start": classes.start, "count": classes.count}}

    def load_state_dict(self, state: dict) -> None:
        conditions = state.get("conditions") if isinstance(state, dict) else None
        expected = {"mean", "std", "rows", "start", "count"}
        if not isinstance(conditions, dict) or set(conditions) != expected:
            raise StateDictError(f"GAN state lacks the attribute statistics of gan_conditions="
                                 f"{self.cfg.gan_conditions!r}; it was saved by a GAN without gan_conditions")
        k = len(self.columns)
        if conditions["mean"].shape != (k,) or conditions["count"].shape != (self.num_classes,):
            raise StateDictError(f"GAN state holds {conditions['mean'].shape[0]} attribute(s) for "
                                 f"{conditions['count'].shape[0]} classes, but gan_conditions="
                                 f"{self.cfg.gan_conditions!r} has {k} for {self.num_classes} classes")
        super().load_state_dict({key: value for key, value in state.items() if key != "conditions"})
        self.attribute_mean, self.attribute_std, self.attribute_rows, count = (
            conditions[key].to(self.device) for key in ("mean", "std", "rows", "count"))
        # The saved rows are in class order: class 0's count[0] rows, then class 1's, ... (start: where each begins).
        labels = torch.repeat_interleave(torch.arange(self.num_classes, device=self.device), count)
        self.attribute_classes = ClassIndex(labels, self.num_classes)
