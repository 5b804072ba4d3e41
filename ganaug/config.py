"""TrialConfig: every key of one joint GAN + classifier trial, with its default, in one place.

The keys are flat and shared by the search-space YAML, Ray Tune's config dict, the Optuna
study and every checkpoint (the whole config is snapshotted into each one).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, fields
from typing import Any

from ganaug.errors import InputError, did_you_mean


class ConfigError(InputError):
    """A configuration key or value is not valid; the message names the key and what would be."""


# The values of every choice key, torch-free, so that this module (and space.py, which validates YAML before
# Ray starts) never imports the modules that implement them. Each registry dict that does (named in the comment)
# is built with registry(key, {...}), which checks its names against these when its module is imported: the
# modules import config, never the other way round, and the two spellings cannot drift apart.
CHOICES = {
    "gan": ("cgan", "acgan", "ali", "translation"),                        # ganaug.families.FAMILIES
    "gan_arch": ("mlp", "dcgan", "resnet"),                                 # ganaug.gans.ARCHITECTURES
    "gan_loss": ("bce", "hinge"),                                           # ganaug.losses.ADVERSARIAL_LOSSES
    "d_minibatch": ("none", "stddev", "discrimination"),                    # ganaug.gans.MINIBATCH_FEATURES
    "labeling": ("pseudo", "lsro", "all_in_one", "distill"),                # ganaug.labeling.LABELERS
    "classifier": ("mlp", "cnn", "resnet"),                                 # ganaug.classifiers.CLASSIFIERS
    "traditional_aug": ("none", "flip_translate", "trivialaugment", "randaugment"),  # ganaug.augment.AUGMENTATIONS
    "d_mix_schedule": ("fixed", "hybrid"),
    "device": ("auto", "cpu", "cuda"),
    "precision": ("auto", "fp32", "bf16"),
    "synthetic_bn": ("shared", "split"),
    "synthetic_schedule": ("constant", "anneal", "front"),
}
# The `data.name` values (ganaug.data.readers.DATASETS), so that DataConfig validates a data: section without torch.
DATASET_NAMES = ("cifar10", "cifar100", "fashion_mnist", "mnist", "imagefolder", "digits")
# diffaugment is a comma-separated subset of these (ganaug.diffaugment.DIFFAUGMENT), not one of them.
DIFFAUGMENT_POLICIES = ("color", "translation", "cutout")
# `classifier` also takes a model from outside the registry: torchvision:NAME (a torchvision.models builder) or
# package.module:factory (any callable returning an nn.Module); ganaug.classifiers resolves and builds them.
IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
# In flat dicts (Tune, Optuna, params.json, checkpoints) each classifier_kwargs entry is its own scalar key.
KWARGS_PREFIX = "classifier_kwargs."
# Factory arguments that come from the dataset (DataSpec), never from classifier_kwargs.
DATASET_ARGUMENTS = ("num_classes", "in_channels", "image_size")
KWARG_SCALARS = (str, int, float, bool, type(None))
# Values of older files that still load: traditional_aug was a bool before it became a choice.
LEGACY_VALUES = {"traditional_aug": {True: "flip_translate", False: "none"}}
CONDITIONED_FAMILIES = ("cgan", "acgan")  # gan families that take gan_conditions (ganaug.conditions)
RANDAUGMENT_MAX_OPS = 14  # RandAugment draws from 14 operations
RANDAUGMENT_MAX_MAGNITUDE = 30  # 31 magnitude bins, as torchvision's RandAugment


def condition_names(conditions: str) -> tuple[str, ...]:
    """'mass, distance' -> ('mass', 'distance'): the gan_conditions columns."""
    return tuple(part.strip() for part in conditions.split(",") if part.strip())


def registry(key: str, entries: dict[str, Any]) -> dict[str, Any]:
    """`entries`, the registry dict of choice key `key` (or of diffaugment's parts), once its names are checked
    against CHOICES: a registry and the names config validates against never drift apart."""
    names = {"diffaugment": DIFFAUGMENT_POLICIES, "dataset": DATASET_NAMES}.get(key) or CHOICES[key]
    if tuple(entries) != names:
        raise AssertionError(f"the {key} registry has {tuple(entries)}, but ganaug.config.CHOICES[{key!r}] says "
                             f"{names}: add the name there too (it is what a YAML is validated against)")
    return entries


def policy_parts(policy: str) -> tuple[str, ...]:
    """'color, translation' -> ('color', 'translation'): the parts of a diffaugment value."""
    return tuple(part.strip() for part in policy.split(",") if part.strip())


def trains_gan(config: TrialConfig | dict[str, Any]) -> bool:
    """Whether a policy adds synthetic images, and so trains a GAN: synthetic_ratio > 0. The one rule the joint
    loop, the results (best GAN vs best no-GAN policy), evaluate and generate use."""
    ratio = config.synthetic_ratio if isinstance(config, TrialConfig) else config["synthetic_ratio"]
    return float(ratio) > 0


def is_import_path(classifier: str) -> bool:
    """Whether a classifier value names a model outside the registry (torchvision:NAME, package.module:factory)."""
    return isinstance(classifier, str) and IMPORT_PATH.fullmatch(classifier) is not None


@dataclass(frozen=True)
class TrialConfig:
    # GAN.
    gan: str = "acgan"                  # GAN family: cgan (label-conditioned D) | acgan (D with auxiliary class head)
                                        # | translation (real images translated to another class, StarGAN).
    gan_arch: str = "mlp"               # G and D: mlp (512-1024-2048) | dcgan (conv) | resnet (SNGAN-style, SN in D).
    gan_loss: str = "bce"               # Adversarial loss: bce (non-saturating) | hinge (SNGAN / BigGAN).
    gan_lr: float = 2e-4                # Adam learning rate of G and D.
    gan_beta1: float = 0.5              # Adam beta1 of G and D (0.5 is the DCGAN choice).
    latent_dim: int = 100               # Size of the noise vector z.
    gan_width: float = 1.0              # Multiplies every hidden width / channel count of G and D.
    acgan_weight: float = 1.0           # acgan, translation: weight of the class cross-entropy in both players' losses.
    acgan_fake_class_loss: bool = True  # acgan: D also learns classes on fakes (Odena 2017); False = real only.
    d_steps: int = 1                    # Discriminator steps per generator step.
    d_label_smoothing: float = 0.0      # One-sided label smoothing: D's target for real images is 1 - s.
    diffaugment: str = ""               # DiffAugment on every D input, e.g. "color,translation,cutout"; "" = off.
    g_ema: float = 0.0                  # Decay of an exponential moving average of G used for sampling; 0 = off.
    d_real_fraction: float = 0.5        # Share of real images in each discriminator batch (the rest are fakes).
    d_mix_schedule: str = "fixed"       # fixed | hybrid (0.5 every third epoch, d_real_fraction otherwise).
    d_spectral_norm: bool = False       # Spectral normalisation of every D layer (always on for gan_arch=resnet).
    d_minibatch: str = "none"           # Batch features in D against collapse: none | stddev | discrimination.
    gan_conditions: str = ""            # Attribute columns (attributes.csv) that also condition G, e.g. "mass,distance"
                                        # (YAML may list them); D regresses them with a predictor head; "" = off.
    predictor_weight: float = 1.0       # gan_conditions: lambda of the predictor losses (D: hinged real-fake error).

    # gan=ali (ganaug/ali.py): ALI (encoder E, G and a joint D on (image, code)), then ACGAN on mixed codes.
    ali_epochs: int = 2                 # GAN passes over the training split spent in the ALI phase before ACGAN's.
    ali_train_encoded_share: float = 0.5  # ACGAN phase: share of G's codes that are E(real image), rest N(0, 1).
    ali_mask_encoded: bool = True       # ACGAN phase: no real/fake loss on images of encoded codes (False: unmasked).
    ali_reconstruction_weight: float = 3.0  # L1(G(E(x), y), x) weight: G+E in ALI (ALICE), encoded rows after; 0 = off.
    ali_encoded_share: float = 0.5      # Sampling: share of synthetic images drawn from codes of real images of y.
    ali_code_noise: float = 0.5         # Sampling: std of the Gaussian noise added to those codes.

    # gan=translation (ganaug/translation.py): StarGAN / CycleGAN class-to-class translation.
    cycle_weight: float = 10.0          # translation: weight of the cycle loss L1(G(G(x, b), a), x) (StarGAN: 10).
    identity_weight: float = 0.0        # translation: weight of CycleGAN's identity loss L1(G(x, a), x); 0 = off.

    # GAN training budget.
    gan_steps_per_batch: int = 1        # GAN updates (d_steps D steps + one G step) per classifier step.
    gan_pretrain_epochs: int = 0        # GAN-only passes over the training split before the classifier's first epoch.
    gan_freeze: bool = False            # GAN stops training when the classifier starts (needs gan_pretrain_epochs >= 1)

    # Augmentation policy.
    synthetic_ratio: float = 0.0        # Synthetic images per real image in each classifier batch; 0 = no GAN data.
    labeling: str = "pseudo"            # Targets for synthetic images: pseudo | lsro | all_in_one.
    gan_warmup_epochs: int = 0          # Epochs of real-only classifier training before synthetic data starts.
    traditional_aug: str = "none"       # Real images: none | flip_translate | trivialaugment | randaugment.
    randaugment_ops: int = 2            # randaugment: operations per image (N).
    randaugment_magnitude: int = 9      # randaugment: magnitude bin M of 0..30 (torchvision's scale).
    cutout: int = 0                     # Side in px of a square cut out of every augmented image; 0 = off.
    augment_synthetic: bool = False     # Synthetic images get the same traditional augmentation and cutout.

    # Making synthetic data count.
    teacher_ema: float = 0.0            # Decay of an EMA of the classifier, the teacher of the two keys below; 0 = off.
    filter_candidates: int = 1          # Candidates per synthetic image; the best-scored per class are kept; 1 = off.
    distill_weight: float = 0.5         # labeling=distill: weight of the teacher's soft label (rest: the class).
    distill_temperature: float = 2.0    # labeling=distill: temperature of the teacher's softmax.
    synthetic_bn: str = "shared"        # shared | split: synthetic rows get their own BatchNorm (AdvProp).
    synthetic_schedule: str = "constant"  # constant | anneal (ratio -> 0 over the 2nd half) | front (1st half only).

    # Classifier.
    classifier: str = "mlp"             # mlp | cnn | resnet | torchvision:NAME | package.module:factory (any model).
    # Arguments of a torchvision:/import-path classifier's factory, e.g. {depth: 3}; flat: classifier_kwargs.depth.
    classifier_kwargs: dict[str, Any] = field(default_factory=dict, hash=False)
    classifier_lr: float = 1e-3         # Adam learning rate of the classifier.
    classifier_width: float = 1.0       # Multiplies every hidden width / channel count of a built-in classifier.
    weight_decay: float = 0.0           # Decoupled (AdamW) weight decay of the classifier.
    batch_size: int = 128               # Real images per classifier batch (and per discriminator batch).

    # Run.
    epochs: int = 20                    # Passes over the real training split.
    seed: int = 0                       # Seeds torch, the batch order and the generator's noise.
    checkpoint_every: int = 5           # Epochs between checkpoints (one is always written at the end).
    sample_every: int = 5               # Epochs between generator sample grids (one is always written at the end).
    cas_epochs: int = 3                 # Epochs of the train-on-synthetic classifier behind the final `cas`; 0 = skip.
    device: str = "auto"                # auto (CUDA when available) | cpu | cuda.
    precision: str = "auto"             # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16.

    # ------------------------------------------------------------------------------------------
    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, where: str = "config", combinations: bool = True) -> TrialConfig:
        """Build a validated config; unknown keys and out-of-range values raise ConfigError.

        `where` prefixes messages (e.g. a YAML file name) so the user knows which input is wrong.
        combinations=False skips the rules between keys (a search space checks those pairwise, space.py).
        """
        known = {f.name: f for f in fields(cls)}
        values = _unflatten_kwargs(values, where)
        for key in values:
            if key not in known:
                hint = did_you_mean(key, known) or f"; valid keys: {', '.join(sorted(known))}"
                raise ConfigError(f"{where}: unknown key {key!r}{hint}")
        coerced = {key: _coerce_kwargs(value, where) if key == "classifier_kwargs" else
                   _coerce(key, known[key], value, where) for key, value in values.items()}
        config = cls(**coerced)
        config.validate(where=where, combinations=combinations)
        return config

    def to_dict(self) -> dict[str, Any]:
        """Flat scalars, as Tune, Optuna, checkpoints and params.json hold them: classifier_kwargs {depth: 3}
        becomes classifier_kwargs.depth: 3 (from_dict reads both forms back)."""
        values = {}
        for name, value in dataclasses.asdict(self).items():
            if name == "classifier_kwargs":
                values.update({KWARGS_PREFIX + key: value[key] for key in sorted(value)})
            else:
                values[name] = value
        return values

    def replace(self, **changes: Any) -> TrialConfig:
        base = self.to_dict()
        if "classifier_kwargs" in changes:  # a whole new mapping replaces the entries, it does not add to them
            base = {key: value for key, value in base.items() if not key.startswith(KWARGS_PREFIX)}
        return TrialConfig.from_dict({**base, **changes})

    def validate(self, *, where: str = "config", combinations: bool = True) -> None:
        """Check every range and registry value, and (combinations) the rules between keys; raise ConfigError
        naming the key."""
        def bad(key: str, valid: str) -> ConfigError:
            return ConfigError(f"{where}: {key}={getattr(self, key)!r} is out of range; valid: {valid}")

        for key in ("gan_lr", "classifier_lr", "gan_width", "classifier_width"):
            if not getattr(self, key) > 0:
                raise bad(key, "a number > 0")
        for key in ("latent_dim", "d_steps", "batch_size", "epochs", "checkpoint_every", "sample_every",
                    "gan_steps_per_batch"):
            if getattr(self, key) < 1:
                raise bad(key, "an integer >= 1")
        for key in ("gan_warmup_epochs", "cas_epochs", "seed", "gan_pretrain_epochs", "cutout"):
            if getattr(self, key) < 0:
                raise bad(key, "an integer >= 0")
        if not 1 <= self.randaugment_ops <= RANDAUGMENT_MAX_OPS:
            raise bad("randaugment_ops", f"an integer in [1, {RANDAUGMENT_MAX_OPS}]")
        if not 0 <= self.randaugment_magnitude <= RANDAUGMENT_MAX_MAGNITUDE:
            raise bad("randaugment_magnitude", f"an integer in [0, {RANDAUGMENT_MAX_MAGNITUDE}]")
        if not 0 < self.acgan_weight <= 10:
            raise bad("acgan_weight", "0 < acgan_weight <= 10")
        for key in ("cycle_weight", "identity_weight"):
            if not 0 <= getattr(self, key) <= 100:
                raise bad(key, f"0 <= {key} <= 100")
        if not 0 <= self.gan_beta1 < 1:
            raise bad("gan_beta1", "0 <= gan_beta1 < 1")
        if not 0 <= self.d_label_smoothing < 0.5:
            raise bad("d_label_smoothing", "0 <= d_label_smoothing < 0.5")
        if not 0 <= self.teacher_ema < 1:
            raise bad("teacher_ema", "0 <= teacher_ema < 1 (0 = off)")
        if not 1 <= self.filter_candidates <= 32:
            raise bad("filter_candidates", "an integer in [1, 32] (1 = off)")
        if not 0 <= self.distill_weight <= 1:
            raise bad("distill_weight", "0 <= distill_weight <= 1")
        if not 0 < self.predictor_weight <= 100:
            raise bad("predictor_weight", "0 < predictor_weight <= 100")
        names = condition_names(self.gan_conditions)
        if len(set(names)) != len(names):
            raise bad("gan_conditions", "distinct attribute column names separated by commas, e.g. 'mass,distance'")
        if not self.distill_temperature > 0:
            raise bad("distill_temperature", "a number > 0")
        if not 0 <= self.g_ema < 1:
            raise bad("g_ema", "0 <= g_ema < 1 (0 = off)")
        if not 0 < self.d_real_fraction < 1:
            raise bad("d_real_fraction", "0 < d_real_fraction < 1")
        if not 0 <= self.synthetic_ratio <= 20:
            raise bad("synthetic_ratio", "0 <= synthetic_ratio <= 20")
        if self.weight_decay < 0:
            raise bad("weight_decay", "a number >= 0")
        if self.ali_epochs < 0:
            raise bad("ali_epochs", "an integer >= 0 (0 = no ALI phase: E stays untrained)")
        for key in ("ali_train_encoded_share", "ali_encoded_share"):
            if not 0 <= getattr(self, key) <= 1:
                raise bad(key, f"0 <= {key} <= 1")
        if not 0 <= self.ali_reconstruction_weight <= 100:
            raise bad("ali_reconstruction_weight", "0 <= ali_reconstruction_weight <= 100 (0 = off)")
        if not 0 <= self.ali_code_noise <= 10:
            raise bad("ali_code_noise", "0 <= ali_code_noise <= 10 (std of the noise on encoded codes)")
        for key in CHOICES:
            if key == "classifier" and is_import_path(self.classifier):
                continue  # resolved and built once the dataset's shape is known (SearchSpec.check_classifier)
            choices = CHOICES[key]
            if getattr(self, key) not in choices:
                external = "; valid: those, or torchvision:NAME or package.module:factory (a callable returning an " \
                           "nn.Module)" if key == "classifier" else ""
                raise ConfigError(
                    f"{where}: {key}={getattr(self, key)!r} is not one of {', '.join(choices)}{external}"
                )
        for name, value in self.classifier_kwargs.items():
            if not (isinstance(name, str) and name.isidentifier()):
                raise ConfigError(f"{where}: classifier_kwargs.{name}: not a parameter name; valid: a Python "
                                  "identifier such as depth")
            if name in DATASET_ARGUMENTS:
                raise ConfigError(f"{where}: classifier_kwargs.{name}: comes from the dataset, never from YAML; "
                                  f"valid: remove it (the factory gets {', '.join(DATASET_ARGUMENTS)} from DataSpec)")
            if not isinstance(value, KWARG_SCALARS):
                raise ConfigError(f"{where}: classifier_kwargs.{name}={value!r} is a {type(value).__name__}; valid: "
                                  "a string, number, boolean or null (one flat scalar per argument)")
        for part in policy_parts(self.diffaugment):
            if part not in DIFFAUGMENT_POLICIES:
                raise ConfigError(
                    f"{where}: diffaugment={self.diffaugment!r} has unknown part {part!r}; "
                    f"valid: a comma-separated subset of {', '.join(DIFFAUGMENT_POLICIES)}, or ''"
                )
        if combinations:
            self._validate_combinations(where)

    def _validate_combinations(self, where: str) -> None:
        """Rules between keys: values each valid alone that do not go together."""
        if self.gan_freeze and self.gan_pretrain_epochs < 1:
            raise ConfigError(f"{where}: gan_freeze=True with gan_pretrain_epochs={self.gan_pretrain_epochs} would "
                              "never train the GAN; valid: gan_pretrain_epochs >= 1, or gan_freeze=False")
        if self.labeling == "distill" and self.teacher_ema == 0:
            raise ConfigError(f"{where}: labeling='distill' needs a teacher but teacher_ema=0 (off); valid: "
                              "teacher_ema > 0 (e.g. 0.999) with labeling='distill', or another labeling")
        if self.filter_candidates > 1 and self.teacher_ema == 0 and self.gan not in ("acgan", "ali", "translation"):
            raise ConfigError(f"{where}: filter_candidates={self.filter_candidates} needs a scorer, but teacher_ema=0 "
                              f"and gan={self.gan!r} has no auxiliary class head; valid: teacher_ema > 0 or "
                              "gan='acgan', 'ali' or 'translation' with filter_candidates > 1, or filter_candidates=1")
        if self.classifier_kwargs and not is_import_path(self.classifier):
            names = ", ".join(self.classifier_kwargs)
            raise ConfigError(f"{where}: classifier_kwargs ({names}) are a factory's arguments, but classifier="
                              f"{self.classifier!r} is built in (it takes classifier_width); valid: classifier: "
                              "torchvision:NAME or package.module:factory with classifier_kwargs (in a search space: "
                              "classifier_kwargs.NAME: {..., when: {classifier: ...}}), or no classifier_kwargs")
        if self.gan_conditions and self.gan not in CONDITIONED_FAMILIES:
            raise ConfigError(f"{where}: gan_conditions={self.gan_conditions!r} conditions the cgan and acgan "
                              f"generators only, not gan={self.gan!r}; valid: gan: {' or '.join(CONDITIONED_FAMILIES)} "
                              "with gan_conditions, or gan_conditions=''")
        if self.gan_loss == "hinge" and self.d_label_smoothing > 0:
            # The hinge loss has margins, not targets: there is nothing for one-sided smoothing to soften.
            raise ConfigError(f"{where}: d_label_smoothing={self.d_label_smoothing!r} applies to gan_loss='bce' "
                              "only; valid: d_label_smoothing=0 with gan_loss='hinge' (in a search space: "
                              "d_label_smoothing: {..., when: {gan_loss: bce}})")


def _unflatten_kwargs(values: dict[str, Any], where: str) -> dict[str, Any]:
    """`values` with its classifier_kwargs.NAME keys folded into one classifier_kwargs mapping. A mapping given as
    well (a YAML `fixed:` section) is the base and the flat keys win: {**base_config, **params} merges them."""
    flat = {str(key)[len(KWARGS_PREFIX):]: value for key, value in values.items()
            if str(key).startswith(KWARGS_PREFIX)}
    if not flat:
        return values
    mapping = values.get("classifier_kwargs") or {}
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: classifier_kwargs={mapping!r} has the wrong type; expected a mapping such as "
                          "{depth: 3}")
    rest = {key: value for key, value in values.items() if not str(key).startswith(KWARGS_PREFIX)}
    return {**rest, "classifier_kwargs": {**mapping, **flat}}


def _coerce_kwargs(value: Any, where: str) -> dict[str, Any]:
    """classifier_kwargs as a plain dict of Python scalars (numpy scalars from Optuna unwrapped); None = {}."""
    if value is None:  # `classifier_kwargs:` left empty in YAML
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: classifier_kwargs={value!r} has the wrong type; expected a mapping such as "
                          "{depth: 3}")
    return {key: item.item() if hasattr(item, "item") and not isinstance(item, (str, bytes)) else item
            for key, item in value.items()}


def _coerce(key: str, spec: dataclasses.Field, value: Any, where: str) -> Any:
    """Accept the value if it has the field's type (ints for floats too; numpy scalars from Optuna)."""
    kind = type(spec.default) if spec.default is not dataclasses.MISSING else str
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar -> Python scalar
    if isinstance(value, bool) and key in LEGACY_VALUES:
        return LEGACY_VALUES[key][value]
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
        if value is None and key in ("diffaugment", "gan_conditions"):
            return ""
        if key == "gan_conditions" and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return ",".join(value)  # YAML [mass, distance] -> "mass,distance", the flat form Tune and Optuna hold
    raise ConfigError(
        f"{where}: {key}={value!r} has the wrong type; expected {kind.__name__} "
        f"(default {spec.default!r})"
    )

