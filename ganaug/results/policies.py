"""The names of an evaluation's policies (best_gan, best_no_gan, oracle, no_gan+<choice>, long_tail+<method>,
best_gan-<key>, the fixed ablations) and the role each plays in a comparison: shared by evaluate, stats and the
report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from ganaug.config import keys_with

BEST_GAN = "best_gan"
BEST_NO_GAN = "best_no_gan"
ORACLE = "oracle"                    # best_gan's settings drawing held-out real images (data.real_pool): the control
VARIANT_PREFIX = f"{BEST_GAN}-"      # --ablate: best_gan-<key> is best_gan with <key> at its default
TRADITIONAL_PREFIX = "no_gan+"       # no_gan+<choice>: GAN off, traditional_aug <choice> (config.ABLATED_AXES)
LONG_TAIL_PREFIX = "long_tail+"      # long_tail+<method>: best_no_gan with that long-tail method (LONG_TAIL_BASELINES)


# Config keys copied into every evaluation.csv row, so the file says what each policy was (config.TrialConfig).
DESCRIBING_KEYS = keys_with("describes")


def alias_map(policies_or_runs: dict[str, dict] | pd.DataFrame) -> dict[str, str]:
    """Every policy name -> the name its runs are under (itself, or the policy it is an alias of).

    Takes the policies of policy_configs, or the runs of evaluation.csv (its `aliases` column)."""
    if isinstance(policies_or_runs, pd.DataFrame):
        runs = policies_or_runs
        aliases: pd.Series | dict[str, str] = \
            runs.groupby("policy", sort=False)["aliases"].first() if "aliases" in runs else {}
        pairs = {name: [a for a in str(text).split(";") if a and a != "nan"] for name, text in dict(aliases).items()}
        names = list(runs["policy"].unique())
    else:
        pairs = {name: policy.get("aliases", []) for name, policy in policies_or_runs.items()}
        names = list(policies_or_runs)
    resolved = {name: name for name in names}
    resolved.update({alias: name for name, aliases in pairs.items() for alias in aliases})
    return resolved


def role_of(name: str) -> str:
    """baseline (best_no_gan) | control (oracle) | ablation (the fixed no-GAN policies) | variant (--ablate) | gan
    (best_gan, topK)."""
    if name == BEST_NO_GAN:
        return "baseline"
    if name == ORACLE:
        return "control"
    if name in FIXED_ABLATIONS or name.startswith((TRADITIONAL_PREFIX, LONG_TAIL_PREFIX)):
        return "ablation"
    if name.startswith(VARIANT_PREFIX):
        return "variant"
    return "gan"


# ----------------------------------------------------------------------------------------------
# Registry: the fixed ablations, changes ganaug.evaluate applies to the best GAN trial's config (their names
# decide role_of); one more per traditional_aug choice (no_gan+<choice>: NO_GAN with that choice) follows them.
# No-GAN policies use pseudo labels, which on real data alone are plain cross-entropy over K outputs (all_in_one
# would leave an untrained (K+1)-th output).
NO_GAN = {"synthetic_ratio": 0.0, "labeling": "pseudo"}
FIXED_ABLATIONS = {
    "no_aug": {**NO_GAN, "traditional_aug": "none", "cutout": 0},  # no synthetic data, no augmentation at all
    "gan_off": NO_GAN,  # the GAN removed, best_gan's traditional augmentation and cutout kept
}


# ----------------------------------------------------------------------------------------------
# Registry: on long-tailed data (data.long_tail or imbalance), each long-tail method at its paper's settings, applied
# to best_no_gan's config (its tuned learning rate and augmentation; GAN off either way), so an evaluation says over
# seeds whether each beats plain cross-entropy, as its paper found, and whether the best GAN policy beats each.
# A callable takes the run's epoch budget; keys the method cannot use take their defaults (config.without_inactive).
LONG_TAIL_BASELINES: dict[str, Callable[[int], dict[str, Any]]] = {
    "cross_entropy": lambda epochs: {"class_balance": "none"},
    # Class-balanced resampling from the first epoch: every class drawn equally often (Cao et al. 2019's "RS").
    "resample": lambda epochs: {"class_balance": "resample", "class_balance_start_epoch": 0},
    # Effective-number weights, deferred (Cao et al. 2019's DRW: plain cross-entropy for 160 of 200 epochs, then
    # Cui et al. 2019's weights at beta 0.9999); from epoch 0 they hurt the features (Cao et al.'s table 3).
    "reweight_drw": lambda epochs: {"class_balance": "reweight", "reweight_beta": 0.9999,
                                    "class_balance_start_epoch": min(epochs - 1, round(0.8 * epochs))},
    # The logit-adjusted loss from the first epoch, tau 1 (Menon et al. 2021's choice).
    "logit_adjust": lambda epochs: {"class_balance": "logit_adjust", "logit_adjust_tau": 1.0,
                                    "class_balance_start_epoch": 0},
}
