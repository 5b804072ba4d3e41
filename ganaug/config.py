"""TrialConfig: every key of one joint GAN + classifier trial, declared once with its default, its limits or
choices and its documentation; the checks, the `valid:` hints and the key table of docs/search-space.md are read
from those.

The keys are flat and shared by the search-space YAML, Ray Tune's config dict, the Optuna study and every
checkpoint (the whole config is snapshotted into each one). docs/search-space.md's table of them is rendered by
`python -m ganaug.space.keys`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, fields
from typing import Any

from ganaug.errors import did_you_mean
from ganaug.options import (
    KWARGS_PREFIX,
    Above,
    ConfigError,
    NoneOf,
    OneOf,
    active,
    coerce,
    coerce_kwargs,
    dependencies,
    option,
    unflatten_kwargs,
    valid_values,
    within,
)

# The `data.name` values (ganaug.data.readers.DATASETS), so that DataConfig validates a data: section without torch.
DATASET_NAMES = ("cifar10", "cifar100", "fashion_mnist", "mnist", "imagefolder", "digits")
# diffaugment is a comma-separated subset of these (ganaug.augment.diffaugment.DIFFAUGMENT), not one of them.
DIFFAUGMENT_POLICIES = ("color", "translation", "cutout")
# `classifier` also takes a model from outside the registry: torchvision:NAME (a torchvision.models builder) or
# package.module:factory (any callable returning an nn.Module); ganaug.classifier resolves and builds them.
# `synthetic_source` takes package.module:factory too (an object with sample(labels, rng)): ganaug.trial.sources.
IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
# Factory arguments that come from the dataset (DataSpec), never from classifier_kwargs.
DATASET_ARGUMENTS = ("num_classes", "in_channels", "image_size")
IMPORTABLE = ("classifier", "synthetic_source")  # the keys that take package.module:factory besides their choices
KWARG_SCALARS = (str, int, float, bool, type(None))
# Values of older files that still load: traditional_aug was a bool before it became a choice.
LEGACY_VALUES = {"traditional_aug": {True: "flip_translate", False: "none"}}
CONDITIONED_FAMILIES = ("cgan", "acgan")  # gan families that take gan_conditions (ganaug.gan.conditions)
SCORING_FAMILIES = ("acgan", "ali", "translation")  # gan families whose D has a class head that can score fakes
BUILT_IN_CLASSIFIERS = ("mlp", "cnn", "resnet", "airbench")  # ganaug.classifier.CLASSIFIERS
# What a synthetic-data key needs to have an effect: synthetic data (config.adds_synthetic); and a GAN key: a GAN, i.e.
# synthetic data from a source a GAN makes (config.trains_gan); see options.active.
SYNTHETIC = {"synthetic_ratio": Above(0)}
GAN_SOURCES = ("gan", "pool")
GAN = {"synthetic_source": OneOf(GAN_SOURCES)}
# Roles of keys (options.ROLES) that many share: a GAN key decides the generator; a run key says where and how long.
GENERATOR, RUN = ("generator",), ("run",)
# The axes evaluate runs every choice of as a no-GAN baseline at best_gan's settings (results.selection:
# no_gan+<choice>), unless the space leaves one out on purpose (experiment.left_out); a space should search each, so
# that best_no_gan is tuned over them (space.SearchSpec.unsearched_ablations: the search warns before Ray if not).
ABLATED_AXES = ("traditional_aug",)
RANDAUGMENT_MAX_OPS = 14  # RandAugment draws from 14 operations
RANDAUGMENT_MAX_MAGNITUDE = 30  # 31 magnitude bins, as torchvision's RandAugment


def condition_names(conditions: str) -> tuple[str, ...]:
    """'mass, distance' -> ('mass', 'distance'): the gan_conditions columns."""
    return tuple(part.strip() for part in conditions.split(",") if part.strip())


def registry(key: str, entries: dict[str, Any]) -> dict[str, Any]:
    """`entries`, the registry dict of choice key `key` (or of diffaugment's parts), once its names are checked
    against CHOICES: a registry and the names config validates against never drift apart. Every choice key has one
    (REGISTRIES, tests/test_layout.py): no `else` stands for a choice."""
    names = {"diffaugment": DIFFAUGMENT_POLICIES, "dataset": DATASET_NAMES}.get(key) or CHOICES[key]
    if tuple(entries) != names:
        raise AssertionError(f"the {key} registry has {tuple(entries)}, but ganaug.config says {names}: add the "
                             "name there too (a TrialConfig field's choices: what a YAML is validated against)")
    REGISTRIES.add(key)
    return entries


REGISTRIES: set[str] = set()  # the keys whose registry has been built (by the modules imported so far)


def policy_parts(policy: str) -> tuple[str, ...]:
    """'color, translation' -> ('color', 'translation'): the parts of a diffaugment value."""
    return tuple(part.strip() for part in policy.split(",") if part.strip())


def adds_synthetic(config: TrialConfig | dict[str, Any]) -> bool:
    """Whether a policy adds synthetic images: synthetic_ratio > 0. The one rule the results (best GAN vs best no-GAN
    policy) and evaluate use, whatever the images' source."""
    ratio = config.synthetic_ratio if isinstance(config, TrialConfig) else config["synthetic_ratio"]
    return float(ratio) > 0


def trains_gan(config: TrialConfig | dict[str, Any]) -> bool:
    """Whether a policy trains a GAN: it adds synthetic images from a source a GAN makes (GAN_SOURCES)."""
    source = config.synthetic_source if isinstance(config, TrialConfig) else config.get("synthetic_source", "gan")
    return adds_synthetic(config) and source in GAN_SOURCES


def is_import_path(value: str) -> bool:
    """Whether a classifier or synthetic_source value names one outside the registry (torchvision:NAME,
    package.module:factory)."""
    return isinstance(value, str) and IMPORT_PATH.fullmatch(value) is not None


@dataclass(frozen=True)
class TrialConfig:
    # GAN.
    gan: str = option("acgan", 'GAN family: {choices}; docs/generators.md says more.', choices={
        "cgan": "label-conditioned D", "acgan": "D with an auxiliary class head",
        "ali": "ACGAN started by ALI: an encoder, synthetic images near real images' codes",
        "translation": "real images of one class translated into another, StarGAN / CycleGAN"}, needs=GAN,
        roles=GENERATOR)
    gan_arch: str = option("mlp", "G and D: {choices}. In every architecture the label enters G through "
                           "conditional BatchNorm.", choices={
                               "mlp": "512-1024-2048", "dcgan": "conv / transposed conv",
                               "resnet": "SNGAN's residual G and D, spectral norm in D"}, needs=GAN, roles=GENERATOR)
    gan_loss: str = option("bce", "Adversarial loss: {choices}.",
                           choices={"bce": "non-saturating", "hinge": "SNGAN / BigGAN"}, needs=GAN, roles=GENERATOR)
    gan_lr: float = option(2e-4, "Adam learning rate of G and D.", gt=0, needs=GAN, roles=GENERATOR)
    gan_beta1: float = option(0.5, "Adam beta1 of G and D (0.5 is the DCGAN choice).", ge=0, lt=1, needs=GAN,
                              roles=GENERATOR)
    latent_dim: int = option(100, "Size of the noise vector z.", ge=1, needs={"gan": NoneOf(("translation",))},
                             roles=GENERATOR)
    gan_width: float = option(1.0, "Multiplies every hidden width / channel count of G and D.", gt=0, needs=GAN,
                              roles=GENERATOR)
    acgan_weight: float = option(1.0, f"{', '.join(SCORING_FAMILIES)}: weight of the class cross-entropy in both "
                                 "players' losses.", gt=0, le=10, needs={"gan": OneOf(SCORING_FAMILIES)},
                                 roles=GENERATOR)
    acgan_fake_class_loss: bool = option(True, "acgan: D also learns classes on fakes (Odena 2017); False = real "
                                         "only.", needs={"gan": OneOf(("acgan", "ali"))}, roles=GENERATOR)
    d_steps: int = option(1, "Discriminator steps per generator step.", ge=1, needs=GAN, roles=GENERATOR)
    d_label_smoothing: float = option(0.0, "One-sided label smoothing: D's target for real images is 1 - s "
                                      "(gan_loss bce only: hinge has margins, not targets).", ge=0, lt=0.5,
                                      needs={"gan_loss": OneOf(("bce",))}, roles=GENERATOR)
    diffaugment: str = option("", 'DiffAugment on every D input, e.g. "color,translation,cutout".', off="",
                              valid=f"a comma-separated subset of {', '.join(DIFFAUGMENT_POLICIES)}", needs=GAN,
                              roles=GENERATOR)
    g_ema: float = option(0.0, "Decay of an exponential moving average of G used for sampling.", ge=0, lt=1, off=0,
                          needs=GAN, roles=GENERATOR)
    d_real_fraction: float = option(0.5, "Share of real images in each discriminator batch (the rest are fakes).",
                                    gt=0, lt=1, needs=GAN, roles=GENERATOR)
    d_mix_schedule: str = option("fixed", "Discriminator batches over training: {choices}.", choices={
        "fixed": "d_real_fraction every epoch", "hybrid": "0.5 every third epoch, d_real_fraction otherwise"},
                                 needs=GAN, roles=GENERATOR)
    d_spectral_norm: bool = option(False, "Spectral normalisation of every D layer (always on for gan_arch=resnet).",
                                   needs={"gan_arch": NoneOf(("resnet",))}, roles=GENERATOR)
    d_minibatch: str = option("none", "Features over the batch in D against collapse: {choices}, computed over "
                              "real rows and fake rows separately.", choices={
                                  "none": "", "stddev": "minibatch standard deviation, Karras 2018",
                                  "discrimination": "minibatch discrimination, Salimans 2016"}, needs=GAN,
                                  roles=GENERATOR)
    gan_conditions: str = option(
        "", "Columns of the dataset's `attributes.csv` that condition G besides the class (YAML may list them: "
        "`[distance, mass]`); D regresses them with a predictor head; samples draw the values from their class's "
        f"training rows. {' / '.join(CONDITIONED_FAMILIES)} only. Reports `condition_error`.", off="",
        valid="distinct attribute column names separated by commas, e.g. 'mass,distance'",
        needs={"gan": OneOf(CONDITIONED_FAMILIES)}, roles=GENERATOR)
    predictor_weight: float = option(1.0, "`gan_conditions`: lambda of the predictor losses (D: lambda x "
                                     "max(0, l2(real) - l2(fake)); G: lambda x l2(fake)).", gt=0, le=100,
                                     needs={"gan_conditions": NoneOf(("",))}, roles=GENERATOR)

    # gan=ali (ganaug/gan/ali.py): ALI (encoder E, G and a joint D on (image, code)), then ACGAN on mixed codes.
    ali_epochs: int = option(2, "`gan: ali`: GAN passes over the training split spent in the ALI phase before the "
                             "ACGAN phase; 0: no ALI phase (E stays untrained).", ge=0,
                             needs={"gan": OneOf(("ali",))}, roles=GENERATOR)
    ali_train_encoded_share: float = option(0.5, "`gan: ali`, ACGAN phase: share of G's codes that are E(x) of the "
                                            "batch's real images, the rest N(0, 1).", ge=0, le=1,
                                            needs={"gan": OneOf(("ali",))}, roles=GENERATOR)
    ali_mask_encoded: bool = option(True, "`gan: ali`, ACGAN phase: no real/fake loss on images from encoded codes "
                                    "(the report's masked variant); False = unmasked.",
                                    needs={"gan": OneOf(("ali",))}, roles=GENERATOR)
    ali_reconstruction_weight: float = option(3.0, "`gan: ali`: weight of L1(G(E(x), y), x) (ALICE's term) on G and "
                                              "E in the ALI phase and on encoded rows after; 0 = plain ALI.",
                                              ge=0, le=100, off=0, needs={"gan": OneOf(("ali",))}, roles=GENERATOR)
    ali_encoded_share: float = option(0.5, "`gan: ali`, sampling: share of synthetic images drawn near the code of "
                                      "a real image of their class.", ge=0, le=1, needs={"gan": OneOf(("ali",))},
                                      roles=GENERATOR)
    ali_code_noise: float = option(0.5, "`gan: ali`, sampling: std of the Gaussian noise added to those codes.",
                                   ge=0, le=10, needs={"gan": OneOf(("ali",))}, roles=GENERATOR)

    # gan=translation (ganaug/gan/translation.py): StarGAN / CycleGAN class-to-class translation.
    cycle_weight: float = option(10.0, "`gan: translation`: weight of the cycle loss L1(G(G(x, b), a), x) "
                                 "(StarGAN's lambda_rec: 10).", ge=0, le=100, needs={"gan": OneOf(("translation",))},
                                 roles=GENERATOR)
    identity_weight: float = option(0.0, "`gan: translation`: weight of CycleGAN's identity loss L1(G(x, a), x).",
                                    ge=0, le=100, off=0, needs={"gan": OneOf(("translation",))}, roles=GENERATOR)

    # GAN training budget.
    gan_steps_per_batch: int = option(1, "GAN updates (d_steps D steps + one G step) per classifier step; each "
                                      "extra one on its own real batch.", ge=1, needs=GAN, roles=GENERATOR)
    gan_pretrain_epochs: int = option(0, "GAN-only passes over the training split before the classifier's first "
                                      "epoch (reported as epoch 0, with `gan_pretrain_epoch`).", ge=0, needs=GAN,
                                      roles=GENERATOR)
    gan_freeze: bool = option(False, "The GAN stops training when the classifier starts and only samples from then "
                              "on (needs gan_pretrain_epochs >= 1).", needs={"gan_pretrain_epochs": Above(0)})

    # Augmentation policy.
    synthetic_ratio: float = option(0.0, "Synthetic images per real image in each classifier batch; 0 = no GAN "
                                    "data.", ge=0, le=20, roles=("unablated", "describes"))
    synthetic_source: str = option("gan", "Where synthetic images come from: {choices}; or package.module:factory, "
                                   "your own generator (docs/sources.md).", choices={
                                       "gan": "the trial's GAN, trained jointly or pretrained and frozen",
                                       "pool": "`synthetic_pool` images per class drawn once from the frozen GAN and "
                                       "kept in its bank entry: no generator pass per batch",
                                       "folder": "images you already have, `synthetic_folder`",
                                       "real": "held-out real training images (data.real_pool): the positive control"},
                                   valid="package.module:factory (sample(labels, rng) -> images in [-1, 1])",
                                   needs=SYNTHETIC, roles=("describes",))
    synthetic_pool: int = option(500, "`synthetic_source: pool`: images per class drawn once from the frozen GAN (with "
                                 "the generator and the seed, the pool's key).", ge=1, le=100_000,
                                 needs={"synthetic_source": OneOf(("pool",))})
    synthetic_folder: str = option("", "`synthetic_source: folder`: a folder of images of the dataset's size and "
                                   "channels, in class subfolders named as the dataset's classes, or directly in it "
                                   "(unlabelled: the labeling gives their targets).", valid="a folder path",
                                   needs={"synthetic_source": OneOf(("folder",))})
    labeling: str = option("pseudo", "Targets for synthetic images: {choices}.", choices={
        "pseudo": "the class G was conditioned on", "lsro": "uniform over the classes, Zheng 2017",
        "all_in_one": "an extra class: the classifier has K + 1 outputs", "distill": "the teacher's soft label, below"},
                           needs=SYNTHETIC, roles=("describes",))
    synthetic_spread: str = option("minority", "Classes of synthetic images, by the training counts n_c (n_max the "
                                   "largest): {choices}; all uniform on balanced data.", choices={
                                       "minority": "weights n_max / n_c, inverse frequency", "balance": "weights n_max "
                                       "- n_c: each class topped up toward the head's count (SYNAuG, Ye-Bin 2023)",
                                       "uniform": "every class alike"}, needs=SYNTHETIC)
    gan_warmup_epochs: int = option(0, "Epochs of real-only classifier training before synthetic data starts.", ge=0,
                                    needs=SYNTHETIC)
    traditional_aug: str = option("none", "Real images: {choices}.", choices={
        "none": "", "flip_translate": "flip + up to 4 px on 32x32",
        "trivialaugment": "flip_translate, then TrivialAugmentWide: one of 14 ops per image at a random magnitude",
        "randaugment": "flip_translate, then `randaugment_ops` ops per image at `randaugment_magnitude`"},
        roles=("describes",))
    randaugment_ops: int = option(2, "randaugment: operations per image (N).", ge=1, le=RANDAUGMENT_MAX_OPS,
                                  needs={"traditional_aug": OneOf(("randaugment",))})
    randaugment_magnitude: int = option(9, "randaugment: magnitude bin M (torchvision's scale).", ge=0,
                                        le=RANDAUGMENT_MAX_MAGNITUDE,
                                        needs={"traditional_aug": OneOf(("randaugment",))})
    cutout: int = option(0, "Side in px of a square set to grey in every augmented image (after traditional_aug); at "
                         "most the image side (checked once the data is loaded).", ge=0, off=0, roles=("describes",))
    mix: str = option("none", "Whole-batch mixing of classifier batches, after traditional_aug: {choices}; a fresh "
                      "lambda ~ Beta(mix_alpha, mix_alpha) and partner per batch; real rows are mixed with real rows "
                      "(synthetic rows with synthetic rows, with augment_synthetic), targets as the images.", choices={
                          "none": "", "mixup": "lambda x + (1 - lambda) x' (Zhang 2018)",
                          "cutmix": "a box of x' pasted into x, per image, lambda = the kept area (Yun 2019)"})
    mix_alpha: float = option(1.0, "mix: alpha of the Beta distribution lambda is drawn from.", gt=0, le=10,
                              needs={"mix": NoneOf(("none",))})
    augment_synthetic: bool = option(False, "Synthetic images get the same traditional augmentation, cutout and mix "
                                     "as real ones.", needs=SYNTHETIC)

    # Making synthetic data count.
    teacher_ema: float = option(0.0, "Decay of an exponential moving average of the classifier, the teacher of the "
                                "two keys below. Reports `val_acc_teacher` (the objective stays the classifier's "
                                "`val_acc`).", ge=0, lt=1, off=0, needs=SYNTHETIC)
    filter_candidates: int = option(
        1, "Candidates drawn per synthetic image; per class the best-scored are kept (same batch size and class "
        "counts). Scored by the teacher, else by D's auxiliary class head "
        f"({', '.join(SCORING_FAMILIES)}); reports `filter_confidence`. > 1 needs `teacher_ema` > 0 or one of "
        "those families.", ge=1, le=32, off=1, needs=SYNTHETIC)
    distill_weight: float = option(0.5, "`labeling: distill`: target = w x softmax(teacher(x) / T) + (1 - w) x "
                                   "one-hot(conditioning class); needs `teacher_ema` > 0.", ge=0, le=1,
                                   needs={"labeling": OneOf(("distill",))})
    distill_temperature: float = option(2.0, "`labeling: distill`: T above.", gt=0,
                                        needs={"labeling": OneOf(("distill",))})
    synthetic_bn: str = option("shared", "BatchNorm of synthetic rows: {choices}; evaluation uses the real rows' "
                               "statistics.", choices={"shared": "the real rows' statistics", "split": (
                                   "their own statistics and affine parameters in the same forward pass, AdvProp")},
                               needs=SYNTHETIC)
    synthetic_schedule: str = option("constant", "Synthetic images over training: {choices}.", choices={
        "constant": "", "anneal": "the ratio falls linearly to 0 over the second half of training",
        "front": 'synthetic images in the first half only: "first GAN images, then real"'}, needs=SYNTHETIC)

    # Classifier.
    classifier: str = option(
        "mlp", "Downstream classifier: {choices} (built in, sized by classifier_width), torchvision:NAME (a "
        "torchvision classification model, untrained; ResNets get a small-image stem) or package.module:factory "
        '(your own model): see "Bring your own classifier".', choices=BUILT_IN_CLASSIFIERS,
        valid="torchvision:NAME or package.module:factory (a callable returning an nn.Module)")
    classifier_kwargs: dict[str, Any] = option(
        {}, "Arguments of a torchvision:/import-path classifier's factory besides "
        f"{', '.join(DATASET_ARGUMENTS)}; scalars only. `classifier_kwargs: {{depth: 3}}` under fixed, or one key "
        "per argument (`classifier_kwargs.depth`), fixed or searched. `small_input: false` keeps a torchvision "
        "ResNet's ImageNet stem.", valid="a mapping of argument names to scalars, e.g. {depth: 3}",
        roles=("unablated",))
    classifier_lr: float = option(1e-3, "Peak learning rate of the classifier (the schedule's 1).", gt=0)
    classifier_width: float = option(1.0, "Multiplies every hidden width / channel count of a built-in classifier.",
                                     gt=0, needs={"classifier": OneOf(BUILT_IN_CLASSIFIERS)})
    classifier_dropout: float = option(1.0, "Multiplies every dropout rate of a built-in classifier (mlp: 0.2 per "
                                       "layer; cnn: 0.25 per block, 0.5 before the head; airbench, resnet: none).",
                                       ge=0, le=1.5, off=0, needs={"classifier": OneOf(("mlp", "cnn"))})
    optimizer: str = option("adamw", "The classifier's optimizer: {choices}.", choices={
        "adamw": "AdamW, weight_decay decoupled", "sgd": "SGD, Nesterov momentum 0.9, weight_decay as L2"})
    lr_schedule: str = option("constant", "The classifier's learning rate per batch, over the trial's `epochs` (so an "
                              "ASHA rung compares trials at one point of one schedule): a linear warm-up over "
                              "warmup_epochs, then {choices}.", choices={
                                  "constant": "", "cosine": "cosine decay to 0",
                                  "onecycle": "linear decay to 0 (with a warm-up: Smith's one-cycle)"})
    warmup_epochs: float = option(0.0, "Epochs of linear learning-rate warm-up from 0 (fractions allowed); fewer than "
                                  "`epochs`.", ge=0, off=0)
    label_smoothing: float = option(0.0, "Label smoothing of the classifier's targets: (1 - s) x target + s / outputs, "
                                    "as F.cross_entropy(label_smoothing=s).", ge=0, lt=1, off=0)
    weight_decay: float = option(0.0, "Weight decay of the classifier (decoupled for adamw, L2 for sgd).", ge=0)
    batch_size: int = option(128, "Real images per classifier batch (and per discriminator batch).", ge=1,
                             roles=GENERATOR)

    # Long-tailed data (data.long_tail): the no-GAN baselines of long-tail work, each combinable with synthetic data.
    class_balance: str = option("none", "Against class imbalance (counts n_c of the training split), on real rows only "
                                "(synthetic rows keep weight 1 and plain logits): {choices}. On equal counts reweight "
                                "and logit_adjust change nothing, resample only draws with replacement.", choices={
                                    "none": "", "resample": "class-balanced real batches: a uniform class per row, "
                                    "then one of its images (Kang 2020)", "reweight": "each real row's loss times its "
                                    "class's effective-number weight (Cui 2019)", "logit_adjust": "the loss of logits "
                                    "+ logit_adjust_tau x log(n_c / n) (Menon 2021); plain logits at test"},
                                    roles=("describes",))
    reweight_beta: float = option(0.9999, "reweight: w_c = (1 - beta) / (1 - beta^n_c), scaled to mean 1 over the "
                                  "classes; 0 = uniform, towards 1 inverse frequency, 1 = 1 / n_c (the limit).",
                                  ge=0, le=1, needs={"class_balance": OneOf(("reweight",))})
    logit_adjust_tau: float = option(1.0, "logit_adjust: tau, the log prior's scale (1: Menon 2021's choice).", gt=0,
                                     le=10, needs={"class_balance": OneOf(("logit_adjust",))})
    class_balance_start_epoch: int = option(0, "Classifier epochs of plain training before class_balance starts "
                                            "(deferred re-weighting / re-sampling, DRW / DRS: Cao 2019; as many as "
                                            "`epochs`: never).", ge=0, off=0,
                                            needs={"class_balance": NoneOf(("none",))})

    # Run.
    epochs: int = option(20, "Passes over the real training split (in a search: scheduler.max_epochs).", ge=1,
                         roles=RUN)
    seed: int = option(0, "Seeds torch, the batch order and the generator's noise.", ge=0,
                       roles=("generator", "unablated"))
    checkpoint_every: int = option(5, "Epochs between checkpoints (one is always written at the end).", ge=1, roles=RUN)
    sample_every: int = option(5, "Epochs between generator sample grids (one is always written at the end).", ge=1,
                               roles=RUN)
    cas_epochs: int = option(3, "Epochs of the train-on-synthetic classifier behind the final `cas`; 0 = skip.", ge=0,
                             roles=RUN)
    device: str = option("auto", "Where the trial runs: {choices}.",
                         choices={"auto": "CUDA when available", "cpu": "", "cuda": ""}, roles=RUN)
    precision: str = option("auto", "Arithmetic of the forward passes: {choices}.",
                            choices={"auto": "bf16 autocast on CUDA, fp32 on CPU", "fp32": "", "bf16": ""}, roles=RUN)

    # ------------------------------------------------------------------------------------------
    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, where: str = "config", combinations: bool = True) -> TrialConfig:
        """Build a validated config; unknown keys and out-of-range values raise ConfigError.

        `where` prefixes messages (e.g. a YAML file name) so the user knows which input is wrong.
        combinations=False skips the rules between keys (a search space checks those pairwise, space.checks).
        """
        known = {f.name: f for f in fields(cls)}
        values = unflatten_kwargs(values, where)
        for key in values:
            if key not in known:
                hint = did_you_mean(key, known) or f"; valid keys: {', '.join(sorted(known))}"
                raise ConfigError(f"{where}: unknown key {key!r}{hint}")
        coerced: dict[str, Any] = {
            key: coerce_kwargs(value, where) if key == "classifier_kwargs" else
            coerce(key, known[key], value, where, LEGACY_VALUES) for key, value in values.items()}
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

    def identity(self) -> dict[str, Any]:
        """to_dict() without the keys this policy cannot use (inactive_keys): what makes two policies the same
        policy (evaluate's run ids, the generator bank's keys)."""
        inactive = set(inactive_keys(self))
        return {key: value for key, value in self.to_dict().items() if key not in inactive}

    def replace(self, **changes: Any) -> TrialConfig:
        base = self.to_dict()
        if "classifier_kwargs" in changes:  # a whole new mapping replaces the entries, it does not add to them
            base = {key: value for key, value in base.items() if not key.startswith(KWARGS_PREFIX)}
        return TrialConfig.from_dict({**base, **changes})

    def validate(self, *, where: str = "config", combinations: bool = True) -> None:
        """Check every key against its field's limits and choices, the values those cannot describe, and
        (combinations) the rules between keys; raise ConfigError naming the key and what is valid."""
        for spec in fields(self):
            value, choices = getattr(self, spec.name), spec.metadata["choices"]
            if not within(value, spec.metadata["limits"]):
                raise ConfigError(f"{where}: {spec.name}={value!r} is out of range; valid: {valid_values(spec)}")
            # An import-path classifier is resolved and built once the dataset's shape is known (space.spec).
            if choices and value not in choices and not (spec.name in IMPORTABLE and is_import_path(value)):
                besides = f"; valid: those, or {spec.metadata['valid']}" if spec.metadata["valid"] else ""
                raise ConfigError(f"{where}: {spec.name}={value!r} is not one of {', '.join(choices)}{besides}")
        names = condition_names(self.gan_conditions)
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}: gan_conditions={self.gan_conditions!r} is out of range; valid: "
                              f"{valid_values(_FIELDS['gan_conditions'])}")
        for part in policy_parts(self.diffaugment):
            if part not in DIFFAUGMENT_POLICIES:
                raise ConfigError(f"{where}: diffaugment={self.diffaugment!r} has unknown part {part!r}; valid: "
                                  f"{valid_values(_FIELDS['diffaugment'])}")
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
        if combinations:
            self._validate_combinations(where)

    def _validate_combinations(self, where: str) -> None:
        """Rules between keys: values each valid alone that do not go together."""
        if self.warmup_epochs >= self.epochs:
            raise ConfigError(f"{where}: warmup_epochs={self.warmup_epochs} is not shorter than epochs={self.epochs}: "
                              "the learning rate would never leave its warm-up; valid: warmup_epochs < epochs")
        if self.gan_freeze and self.gan_pretrain_epochs < 1:
            raise ConfigError(f"{where}: gan_freeze=True with gan_pretrain_epochs={self.gan_pretrain_epochs} would "
                              "never train the GAN; valid: gan_pretrain_epochs >= 1, or gan_freeze=False")
        if self.labeling == "distill" and self.teacher_ema == 0:
            raise ConfigError(f"{where}: labeling='distill' needs a teacher but teacher_ema=0 (off); valid: "
                              "teacher_ema > 0 (e.g. 0.999) with labeling='distill', or another labeling")
        scored_by_gan = self.synthetic_source in GAN_SOURCES and self.gan in SCORING_FAMILIES
        if self.filter_candidates > 1 and self.teacher_ema == 0 and not scored_by_gan:
            raise ConfigError(f"{where}: filter_candidates={self.filter_candidates} needs a scorer, but teacher_ema=0 "
                              f"and synthetic_source={self.synthetic_source!r} with gan={self.gan!r} has no auxiliary "
                              f"class head; valid: teacher_ema > 0, or synthetic_source gan or pool with gan="
                              f"{' or '.join(map(repr, SCORING_FAMILIES))}, with filter_candidates > 1; or "
                              "filter_candidates=1")
        if self.synthetic_source == "pool" and not (self.gan_freeze and self.gan_pretrain_epochs >= 1):
            raise ConfigError(f"{where}: synthetic_source='pool' draws its images once from a frozen generator, but "
                              f"gan_freeze={self.gan_freeze} with gan_pretrain_epochs={self.gan_pretrain_epochs}; "
                              "valid: gan_freeze=True with gan_pretrain_epochs >= 1, or synthetic_source='gan'")
        if self.synthetic_source == "folder" and not self.synthetic_folder:
            raise ConfigError(f"{where}: synthetic_source='folder' needs synthetic_folder; valid: synthetic_folder: "
                              "a folder of images (class subfolders, or images directly in it)")
        if self.classifier_kwargs and not is_import_path(self.classifier):
            names = ", ".join(self.classifier_kwargs)
            raise ConfigError(f"{where}: classifier_kwargs ({names}) are a factory's arguments, but classifier="
                              f"{self.classifier!r} is built in (it takes classifier_width); valid: classifier: "
                              "torchvision:NAME or package.module:factory with classifier_kwargs (in a search space: "
                              "classifier_kwargs.NAME: {..., when: {classifier: ...}}), or no classifier_kwargs")
        if self.gan_conditions and self.gan not in CONDITIONED_FAMILIES:
            raise ConfigError(f"{where}: gan_conditions={self.gan_conditions!r} conditions the "
                              f"{' and '.join(CONDITIONED_FAMILIES)} generators only, not gan={self.gan!r}; valid: "
                              f"gan: {' or '.join(CONDITIONED_FAMILIES)} with gan_conditions, or gan_conditions=''")
        if self.gan_loss == "hinge" and self.d_label_smoothing > 0:
            # The hinge loss has margins, not targets: there is nothing for one-sided smoothing to soften.
            raise ConfigError(f"{where}: d_label_smoothing={self.d_label_smoothing!r} applies to gan_loss='bce' "
                              "only; valid: d_label_smoothing=0 with gan_loss='hinge' (in a search space: "
                              "d_label_smoothing: {..., when: {gan_loss: bce}})")


_FIELDS = {spec.name: spec for spec in fields(TrialConfig)}
# The values of every choice key, read from its field: validated here, torch-free (a YAML is validated before Ray
# starts), and the names of the key's registry dict where it has one (gan: ganaug.gan.families.FAMILIES, gan_arch,
# d_minibatch, gan_loss, labeling, classifier, traditional_aug), which registry() checks when its module is imported.
CHOICES = {name: tuple(spec.metadata["choices"]) for name, spec in _FIELDS.items() if spec.metadata["choices"]}


def keys_with(role: str) -> tuple[str, ...]:
    """The keys that play `role` (options.ROLES), in field order, read from each field's declaration."""
    return tuple(name for name, spec in _FIELDS.items() if role in spec.metadata["roles"])


def inactive_keys(config: TrialConfig | dict[str, Any]) -> list[str]:
    """The keys a policy cannot use (each field's `needs`, options.active), in field order: every GAN key when
    synthetic_ratio is 0, a family's own keys under another family, randaugment_* without RandAugment, ... A search
    does not draw them, summary.csv and best_policy.yaml leave them blank, and they are no part of its identity."""
    values = config.to_dict() if isinstance(config, TrialConfig) else {**TrialConfig().to_dict(), **config}
    return [name for name in _FIELDS if not is_active(name, values)]


def without_inactive(values: dict[str, Any]) -> dict[str, Any]:
    """`values` (some of a policy's keys) without the keys that policy cannot use, so that they take their defaults:
    a fixed labeling: distill in a trial with synthetic_ratio 0, whose teacher_ema was not drawn, is no conflict."""
    inactive = set(inactive_keys(values))
    return {key: value for key, value in values.items() if key not in inactive}


def is_active(key: str, values: dict[str, Any]) -> bool:
    """Whether `key` has an effect in a policy whose keys have `values` (all of them: defaults filled in)."""
    return active(key, values, _FIELDS)


def depends_on(key: str) -> set[str]:
    """The keys whose values decide whether `key` is active (a search draws them first)."""
    return dependencies(key, _FIELDS)
