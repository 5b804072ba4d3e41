"""Statistics of an evaluation's runs (evaluation.csv): t-intervals over seeds and paired differences by seed.

The runs are keyed by policy name; the names, and the role each name plays in a comparison, are those of
ganaug.results.policies, shared with evaluate (which runs the policies) and the report (which shows them).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
from scipy.stats import t as student_t
from scipy.stats import ttest_rel

from ganaug.results.policies import BEST_GAN, BEST_NO_GAN, ORACLE, alias_map, role_of

CONFIDENCE = 0.95


# ----------------------------------------------------------------------------------------------
# Statistics: t-intervals over seeds, paired differences by seed.

def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high) of the two-sided t-interval of the mean; nan bounds for fewer than 2 values."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = float(student_t.ppf((1 + confidence) / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def summarize(runs: pd.DataFrame, column: str = "test_acc") -> pd.DataFrame:
    """Per policy (in run order): n, mean, std, ci_low, ci_high of `column` over seeds."""
    rows = []
    for policy, group in runs.groupby("policy", sort=False):
        values = group[column].to_numpy(dtype=float)
        mean, low, high = t_interval(values)
        finite = values[np.isfinite(values)]
        rows.append({"policy": policy, "n": len(finite), "mean": mean,
                     "std": float(finite.std(ddof=1)) if len(finite) > 1 else math.nan,
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def comparisons(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """The (policy, baseline) pairs the report shows, by policy name: best_gan - best_no_gan first, then best_gan
    - every fixed ablation, oracle - best_no_gan (the positive control), every other GAN policy - best_no_gan, and
    every --ablate variant - best_gan."""
    names = list(runs["policy"].unique())
    no_gan = [n for n in names if role_of(n) in ("baseline", "ablation")]
    pairs = [(BEST_GAN, baseline) for baseline in no_gan if BEST_GAN in names]
    pairs += [(n, BEST_NO_GAN) for n in names if role_of(n) == "control" and BEST_NO_GAN in names]
    pairs += [(n, BEST_NO_GAN) for n in names if role_of(n) == "gan" and n != BEST_GAN and BEST_NO_GAN in names]
    pairs += [(n, BEST_GAN) for n in names if role_of(n) == "variant" and BEST_GAN in names]
    return pairs


def paired_differences(runs: pd.DataFrame, column: str = "test_acc", baselines: tuple[str, ...] | None = None,
                       pairs: list[tuple[str, str]] | None = None) -> pd.DataFrame:
    """Policy minus baseline, paired by seed: mean difference, its t-interval, paired t-test, wins.

    `pairs` names them; else every policy not in `baselines` minus each of them; else comparisons(runs). A name
    that is an alias (evaluation.csv's `aliases`) reads the runs of the policy it is an alias of.
    """
    table = runs.pivot_table(index="seed", columns="policy", values=column, aggfunc="first", dropna=False)
    if pairs is None:
        pairs = comparisons(runs) if baselines is None else [
            (p, b) for p in runs["policy"].unique() if p not in baselines for b in baselines if b in table]
    resolve = alias_map(runs)
    rows = []
    for policy, baseline in pairs:
        names = [resolve.get(policy, policy), resolve.get(baseline, baseline)]
        both = table[names].dropna() if set(names) <= set(table) else pd.DataFrame(columns=names)
        difference = (both.iloc[:, 0] - both.iloc[:, 1]).to_numpy()
        mean, low, high = t_interval(difference)
        p_value = math.nan
        if len(both) >= 2 and np.ptp(difference) > 0:  # a constant difference has no t statistic
            p_value = float(ttest_rel(both.iloc[:, 0], both.iloc[:, 1]).pvalue)
        rows.append({"policy": policy, "baseline": baseline, "pairs": len(both), "mean_diff": mean,
                     "ci_low": low, "ci_high": high, "p_value": p_value, "wins": int((difference > 0).sum())})
    return pd.DataFrame(rows, columns=["policy", "baseline", "pairs", "mean_diff", "ci_low", "ci_high", "p_value",
                                       "wins"])


def ablation_differences(runs: pd.DataFrame, variants: list[str] | None = None,
                         column: str = "test_acc") -> pd.DataFrame:
    """Each --ablate variant minus best_gan, paired by seed (paired_differences' columns)."""
    if variants is None:
        variants = [name for name in alias_map(runs) if role_of(name) == "variant"]
    return paired_differences(runs, column, pairs=[(name, BEST_GAN) for name in variants])


def per_class_deltas(runs: pd.DataFrame, policy: str = BEST_GAN, baseline: str = BEST_NO_GAN) -> pd.DataFrame:
    """Per class: mean accuracy of `baseline` and `policy` over seeds, and the mean paired difference."""
    resolve = alias_map(runs)

    def per_class(name: str) -> pd.DataFrame:
        rows = runs[runs["policy"] == resolve.get(name, name)]
        return pd.DataFrame([json.loads(text) for text in rows["per_class_acc"]], index=rows["seed"].to_numpy())

    ours, theirs = per_class(policy), per_class(baseline)
    seeds = ours.index.intersection(theirs.index)
    delta = (ours.loc[seeds] - theirs.loc[seeds]).mean()
    return pd.DataFrame({"class": list(ours.columns), baseline: theirs.loc[seeds].mean().to_numpy(),
                         policy: ours.loc[seeds].mean().to_numpy(), "delta": delta.to_numpy()})



def gain_recovery(runs: pd.DataFrame, column: str = "test_acc", confidence: float = CONFIDENCE) -> dict[str, float]:
    """The share of real data's value a generator delivers: R = mean(best_gan - best_no_gan) / mean(oracle -
    best_no_gan), paired by seed (1: as much as the held-out real images, 0: nothing, < 0: it hurts), with Fieller's
    interval: the values of R for which the paired differences (best_gan - best_no_gan) - R (oracle - best_no_gan)
    have a t-interval around their mean that holds 0. It is bounded only when the oracle's own gain is clear of 0 at
    that confidence (else low and high are -inf and inf: the data cannot say what share is recovered)."""
    resolve = alias_map(runs)
    names = [resolve.get(name, name) for name in (BEST_GAN, BEST_NO_GAN, ORACLE)]
    table = runs.pivot_table(index="seed", columns="policy", values=column, aggfunc="first", dropna=False)
    nan = {"recovery": math.nan, "ci_low": math.nan, "ci_high": math.nan, "pairs": 0}
    if not set(names) <= set(table):
        return nan
    both = table[names].dropna()
    gan_gain = (both.iloc[:, 0] - both.iloc[:, 1]).to_numpy()
    oracle_gain = (both.iloc[:, 2] - both.iloc[:, 1]).to_numpy()
    n = len(both)
    if n < 2 or oracle_gain.mean() == 0:
        return {**nan, "pairs": n}
    a, b = gan_gain.mean(), oracle_gain.mean()
    covariance = np.cov(np.stack([gan_gain, oracle_gain])) / n  # of the two means
    t2 = float(student_t.ppf((1 + confidence) / 2, n - 1)) ** 2
    # (a - R b)^2 = t^2 var(a - R b): quadratic * R^2 - 2 linear * R + constant = 0
    quadratic = b * b - t2 * covariance[1, 1]
    linear = a * b - t2 * covariance[0, 1]
    constant = a * a - t2 * covariance[0, 0]
    discriminant = linear * linear - quadratic * constant
    if quadratic <= 0 or discriminant < 0:
        low, high = -math.inf, math.inf
    else:
        root = math.sqrt(discriminant)
        low, high = (linear - root) / quadratic, (linear + root) / quadratic
    return {"recovery": float(a / b), "ci_low": float(low), "ci_high": float(high), "pairs": n}
