"""Which policies an evaluation runs, chosen from a search: best_no_gan and best_gan (and top2..K) as searched, the
positive control (oracle) where the data holds a real pool, the fixed ablations and one no-GAN policy per traditional
augmentation at best_gan's settings, the long-tail methods on long-tailed data, and with --ablate one variant per
non-default key; each with the evaluation's epoch budget, and equal configs run once (aliases)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pandas as pd

from ganaug.config import ABLATED_AXES, CHOICES, ConfigError, TrialConfig, keys_with, without_inactive
from ganaug.errors import InputError
from ganaug.results.experiment import Experiment, uses_synthetic
from ganaug.results.policies import (
    BEST_GAN,
    BEST_NO_GAN,
    FIXED_ABLATIONS,
    LONG_TAIL_BASELINES,
    LONG_TAIL_PREFIX,
    NO_GAN,
    ORACLE,
    TRADITIONAL_PREFIX,
    VARIANT_PREFIX,
)


class EvaluationError(InputError):
    """The experiment cannot be evaluated as asked; the message names the folder or option."""


# ----------------------------------------------------------------------------------------------
# Which policies run: best_no_gan and best_gan as searched, top2..K, the fixed ablations (FIXED_ABLATIONS and
# one per traditional_aug choice) at best_gan's settings, and with --ablate one variant per non-default key.

def complete_trials(experiment: Experiment) -> pd.DataFrame:
    """Complete, non-diverged trials with a score, best first."""
    trials = experiment.ranked(experiment.trials[experiment.trials["status"] == "complete"])
    if trials.empty:
        counts = dict(experiment.trials["status"].value_counts())
        raise EvaluationError(f"{experiment.path}: no complete trial to evaluate (trial statuses: {counts}); "
                              f"let the search finish, or resume it with python -m ganaug.tune SPACE --resume")
    return trials


def gan_trials(experiment: Experiment) -> pd.DataFrame:
    """Trials that use synthetic data (synthetic_ratio > 0), best first: the complete ones; when ASHA stopped
    every GAN trial early, the pruned GAN trials that got furthest (Experiment.policy_trials; the first is
    Experiment.best_gan, which `ganaug generate` exports by default).

    A search whose baselines score high from the first epoch can prune every GAN policy (the quickstart on
    digits does). Evaluate retrains every policy for the full budget anyway, so the best GAN policy the search
    found still answers the question; its `source` says it was pruned.
    """
    complete_trials(experiment)  # a search with no complete trial at all is not ready to evaluate
    trials, _ = experiment.policy_trials(gan=True)
    if trials.empty:
        raise EvaluationError(f"{experiment.path}: no complete or pruned trial uses synthetic data "
                              f"(synthetic_ratio > 0), so there is no GAN policy to compare with the baselines")
    return trials


def no_gan_trials(experiment: Experiment) -> pd.DataFrame:
    """Complete, non-diverged trials without synthetic data (synthetic_ratio 0), best first; may be empty."""
    trials = complete_trials(experiment)
    return trials[~uses_synthetic(experiment, trials)]


def policy_configs(experiment: Experiment, top: int = 1, epochs: int | None = None,
                   ablate: bool = False) -> dict[str, dict]:
    """Policy name -> {"trial_id", "config", "source", "aliases", ...}, in run and report order.

    best_no_gan and best_gan (and top2..topK) keep their own searched settings; the fixed ablations and the
    --ablate variants are best_gan's config with a few keys changed. All share the epoch budget (the search's
    max_epochs unless `epochs`), checkpoint only at the end and skip the CAS score. A policy whose config
    equals an earlier one's is not run twice: it is listed in the earlier one's "aliases".
    On long-tailed data (data.long_tail or imbalance) best_no_gan with each long-tail method at its paper's
    settings follows (long_tail+<method>, policies.LONG_TAIL_BASELINES): plain cross-entropy among them.
    `source`: searched (a trial's config as is) | pruned at epoch N (no GAN trial completed) |
    untuned (best_no_gan without a complete no-GAN trial) |
    ablation (a fixed ablation) | long-tail (a long-tail method) | ablate (an --ablate variant).
    """
    if top < 1:
        raise EvaluationError(f"--top {top}: valid: an integer >= 1")
    if epochs is not None and epochs < 1:
        raise EvaluationError(f"--epochs {epochs}: valid: an integer >= 1")
    ranked = gan_trials(experiment)  # best_gan (Experiment.best_gan) first, then top2..K
    epochs = epochs or int(experiment.meta["max_epochs"])
    budget = {"epochs": epochs, "checkpoint_every": epochs, "sample_every": epochs, "cas_epochs": 0}
    best = ranked.iloc[0]
    best_id = str(best["trial_id"])
    best_config = TrialConfig.from_dict({**experiment.config_of(best), **budget}, where=f"policy {BEST_GAN}").to_dict()

    def derived(name: str, changes: dict, source: str) -> tuple[str, dict]:
        config = TrialConfig.from_dict({**best_config, **changes}, where=f"policy {name}").to_dict()
        return name, {"trial_id": best_id, "config": config, "source": source}

    candidates = []  # (name, policy) in priority order: the first of equal configs keeps its name
    baseline = no_gan_trials(experiment)
    if baseline.empty:
        # No tuned baseline to compare with: the fairest untuned one is best_gan with only the GAN removed.
        candidates.append(derived(BEST_NO_GAN, FIXED_ABLATIONS["gan_off"], "untuned"))
    else:
        trial = baseline.iloc[0]
        config = TrialConfig.from_dict({**experiment.config_of(trial), **budget}, where=f"policy {BEST_NO_GAN}")
        candidates.append((BEST_NO_GAN, {"trial_id": str(trial["trial_id"]), "config": config.to_dict(),
                                         "source": "searched"}))
    searched = lambda trial: "searched" if trial["status"] == "complete" else f"pruned at epoch {trial['epochs']}"
    candidates.append((BEST_GAN, {"trial_id": best_id, "config": best_config, "source": searched(best)}))
    for rank, (_, trial) in enumerate(ranked.iloc[1:top].iterrows(), start=2):
        config = TrialConfig.from_dict({**experiment.config_of(trial), **budget}, where=f"policy top{rank}")
        candidates.append((f"top{rank}", {"trial_id": str(trial["trial_id"]), "config": config.to_dict(),
                                          "source": searched(trial)}))
    data = experiment.meta["data"]
    if data.get("real_pool"):  # the positive control: best_gan with held-out real images as its source
        candidates.append(derived(ORACLE, oracle_changes(best_config, long_tailed=bool(data.get("long_tail"))),
                                  "control"))
    for name, changes in FIXED_ABLATIONS.items():
        candidates.append(derived(name, changes, "ablation"))
    left_out = experiment.meta.get("left_out") or {}
    for axis in ABLATED_AXES:  # every choice but those the space leaves out on purpose
        for choice in (c for c in CHOICES[axis] if c not in left_out.get(axis, {})):
            candidates.append(derived(f"{TRADITIONAL_PREFIX}{choice}", {**NO_GAN, axis: choice}, "ablation"))
    if data.get("long_tail") or data.get("imbalance"):
        tuned = candidates[0][1]  # best_no_gan: the long-tail methods change only its class-balance keys
        for method, settings in LONG_TAIL_BASELINES.items():
            name = f"{LONG_TAIL_PREFIX}{method}"
            # As a trial does: the keys the method cannot use (the baseline's tau under resample) take defaults.
            method_config = TrialConfig.from_dict(without_inactive({**tuned["config"], **settings(epochs)}),
                                                  where=f"policy {name}").to_dict()
            candidates.append((name, {"trial_id": tuned["trial_id"], "config": method_config, "source": "long-tail"}))
    if ablate:
        variants = ablation_variants(best_config)
        if not variants:
            raise EvaluationError(f"--ablate: the best GAN policy (trial {best_id}) has every policy key at its "
                                  f"default (synthetic_ratio aside), so there is nothing to reset; valid: "
                                  f"leave out --ablate")
        for key, changes in variants.items():
            candidates.append(derived(f"{VARIANT_PREFIX}{key}", changes, "ablate"))
    return _deduplicate(candidates)


def oracle_changes(config: dict, long_tailed: bool) -> dict[str, Any]:
    """What turns best_gan (`config`) into the oracle: its synthetic rows drawn from the held-out real images
    (synthetic_source: real), every other key as searched (its GAN keys no longer apply). On long-tailed data the
    synthetic rows top the tail up toward the head's count (synthetic_spread: balance), as the tail's cut images do.
    A perfect generator's images carry their class: labelings that hedge against a wrong one (lsro's uniform
    target, all_in_one's extra class) would throw it away, so the oracle labels them with it (pseudo). A filter
    without a teacher had the GAN's class head to score with: the oracle keeps every image instead."""
    changes: dict[str, Any] = {"synthetic_source": "real"}
    if long_tailed:
        changes["synthetic_spread"] = "balance"
    if config["labeling"] in ("lsro", "all_in_one"):
        changes["labeling"] = "pseudo"
    if config["filter_candidates"] > 1 and config["teacher_ema"] == 0:
        changes["filter_candidates"] = 1
    return changes


def ablation_variants(config: dict) -> dict[str, dict]:
    """Key -> the changes of its --ablate variant: the key at its TrialConfig default, for every ABLATION_KEYS
    key that differs from it in `config`.

    When the reset alone breaks a rule between keys (gan_pretrain_epochs reset to 0 while gan_freeze stays
    True), the first other non-default key whose reset as well makes a valid config is reset with it; the
    report names it. A key that no such pair repairs is left out (none does today).
    """
    defaults = TrialConfig().to_dict()
    changed = [key for key in ABLATION_KEYS if config[key] != defaults[key]]
    variants = {}
    for key in changed:
        for partner in [None, *[k for k in changed if k != key]]:
            changes = {key: defaults[key]} if partner is None else {key: defaults[key], partner: defaults[partner]}
            try:
                TrialConfig.from_dict({**config, **changes})
            except ConfigError:
                continue
            variants[key] = changes
            break
    return variants


def _deduplicate(candidates: list[tuple[str, dict]]) -> dict[str, dict]:
    """Keep the first policy of each distinct config (TrialConfig.identity: keys a policy cannot use do not make it
    another); later ones with the same config become its aliases."""
    policies: dict[str, dict] = {}
    identity = lambda policy: TrialConfig.from_dict(policy["config"]).identity()
    for name, policy in candidates:
        same = next((kept for kept, other in policies.items() if identity(other) == identity(policy)), None)
        if same is None:
            policies[name] = {**policy, "aliases": []}
        else:
            policies[same]["aliases"].append(name)
    return policies


# ----------------------------------------------------------------------------------------------
# The keys --ablate never resets (the fixed ablations, FIXED_ABLATIONS, live in ganaug.results.policies, whose
# role_of reads them), as each declares (config.TrialConfig): the run budget and hardware (the same for every policy
# of an evaluation), the seed, and synthetic_ratio, whose default 0 removes the GANTrainer, which gan_off and no_aug
# already measure, and classifier_kwargs, an external model's own arguments (`classifier` is ablated).
NOT_ABLATED = tuple(sorted({*keys_with("run"), *keys_with("unablated")}, key=TrialConfig.keys().index))
ABLATION_KEYS = tuple(field.name for field in fields(TrialConfig) if field.name not in NOT_ABLATED)
