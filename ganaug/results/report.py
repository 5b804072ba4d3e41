"""The outputs of an evaluation: evaluation.md (its first line is the headline) and the plots.

Reads the runs of evaluation.csv and the policies of selection.policy_configs; every number it shows comes
from ganaug.results.stats.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ganaug.config import inactive_keys
from ganaug.results.experiment import Experiment
from ganaug.results.policies import (
    BEST_GAN,
    BEST_NO_GAN,
    DESCRIBING_KEYS,
    LONG_TAIL_PREFIX,
    ORACLE,
    TRADITIONAL_PREFIX,
    VARIANT_PREFIX,
    alias_map,
    role_of,
)
from ganaug.results.stats import (
    CONFIDENCE,
    ablation_differences,
    comparisons,
    gain_recovery,
    paired_differences,
    per_class_deltas,
    summarize,
)


def headline(runs: pd.DataFrame, untuned: bool | None = None, column: str = "test_acc") -> str:
    """The report's first line: best_gan - best_no_gan in percentage points of `column` (test_acc, or on long-tailed
    data test_balanced_acc, which it then names), its interval and the seed count.

    `untuned` (best_no_gan is not a searched trial) defaults to what the runs' `source` column says."""
    if untuned is None:
        source = runs.loc[runs["policy"] == BEST_NO_GAN, "source"] if "source" in runs else pd.Series(dtype=str)
        untuned = bool((source == "untuned").any())
    row = paired_differences(runs, column, pairs=[(BEST_GAN, BEST_NO_GAN)]).iloc[0]
    points = [100 * row[k] for k in ("mean_diff", "ci_low", "ci_high")]
    shown = f"{points[0]:+.1f} points" if math.isfinite(points[0]) else "n/a"
    interval = f"[{points[1]:+.1f}, {points[2]:+.1f}]" if math.isfinite(points[1]) else "[n/a]"
    line = (f"best GAN policy vs best no-GAN policy: {shown} {interval} ({100 * CONFIDENCE:.0f} % CI, paired over "
            f"{row['pairs']} seeds)")
    if column == "test_balanced_acc":
        line += ", in balanced test accuracy (the mean over classes: the training data is long-tailed)"
    if untuned:
        line += "; the no-GAN policy is untuned (the search has no complete synthetic_ratio 0 trial)"
    return line


def control_line(runs: pd.DataFrame, column: str = "test_acc") -> str:
    """The positive control under the headline (runs with an `oracle`): oracle - best_no_gan with its interval, which
    shows the search and this test can see a gain when there is one, and the gain recovery, the share of it that
    best_gan's generator delivers (stats.gain_recovery). "" without an oracle."""
    if ORACLE not in alias_map(runs):
        return ""
    row = paired_differences(runs, column, pairs=[(ORACLE, BEST_NO_GAN)]).iloc[0]
    share = gain_recovery(runs, column)
    points = [100 * row[k] for k in ("mean_diff", "ci_low", "ci_high")]
    interval = lambda low, high, form: f"[{format(low, form)}, {format(high, form)}]" if math.isfinite(low) and \
        math.isfinite(high) else "[unbounded: the oracle's own gain is not clear of 0]"
    return (f"positive control (oracle: best_gan's settings drawing held-out real images): oracle - best_no_gan "
            f"{points[0]:+.1f} points {interval(points[1], points[2], '+.1f')}; gain recovery (best_gan - "
            f"best_no_gan) / (oracle - best_no_gan) {share['recovery']:.2f} "
            f"{interval(share['ci_low'], share['ci_high'], '.2f')} ({100 * CONFIDENCE:.0f} % Fieller interval, "
            f"paired over {share['pairs']} seeds): the share of real images' value the generator delivers")


def strongest_no_gan(runs: pd.DataFrame, column: str = "test_acc") -> str | None:
    """The no-GAN policy of the evaluation (best_no_gan, the fixed ablations, no_gan+<choice>, long_tail+<method>)
    with the best mean `column` on the test split; None without one."""
    summary = summarize(runs, column)
    no_gan = summary[[role_of(name) in ("baseline", "ablation") for name in summary["policy"]]].dropna(subset=["mean"])
    return str(no_gan.sort_values("mean", ascending=False, kind="stable")["policy"].iloc[0]) if len(no_gan) else None


def strongest_line(runs: pd.DataFrame, column: str = "test_acc") -> str:
    """The line under the headline that names the strongest no-GAN policy the evaluation ran, chosen on the test
    split (best_no_gan was chosen on validation by the search: the two can differ), and best_gan's paired difference
    to it; choosing the baseline on test favours it, so a GAN gain over it is a conservative claim. "" when
    best_gan or a no-GAN policy is missing."""
    strongest, names = strongest_no_gan(runs, column), alias_map(runs)
    if strongest is None or BEST_GAN not in names:
        return ""
    mean = summarize(runs, column).set_index("policy").loc[strongest, "mean"]
    chosen = f"the strongest no-GAN policy evaluated, chosen on the test split ({column} {mean:.4f})"
    if strongest == names.get(BEST_NO_GAN, BEST_NO_GAN):
        return f"{BEST_NO_GAN} (chosen on validation by the search) is also {chosen}"
    row = paired_differences(runs, column, pairs=[(BEST_GAN, strongest)]).iloc[0]
    points = [100 * row[k] for k in ("mean_diff", "ci_low", "ci_high")]
    interval = f"[{points[1]:+.1f}, {points[2]:+.1f}]" if math.isfinite(points[1]) else "[n/a]"
    return (f"{chosen}: {strongest}, not {BEST_NO_GAN} (chosen on validation by the search); {BEST_GAN} - "
            f"{strongest} {points[0]:+.1f} points {interval}: choosing the baseline on test favours it, so a GAN "
            f"gain over it is a conservative claim")


def question_policies(runs: pd.DataFrame, column: str = "test_acc") -> list[str]:
    """The policies that answer the question, in the order the figures show them: best_no_gan, the strongest no-GAN
    policy evaluated when it is another, best_gan, and the positive control (oracle) when there is one."""
    names = alias_map(runs)
    strongest = strongest_no_gan(runs, column)
    order = [names.get(BEST_NO_GAN), strongest, names.get(BEST_GAN), names.get(ORACLE)]
    return [name for name in dict.fromkeys(order) if name is not None]


def plot_question(ax, runs: pd.DataFrame, column: str = "test_acc") -> None:
    """The question's policies (question_policies) on the test split: each mean with its interval, every seed."""
    shown = question_policies(runs, column)
    plot_means(ax, runs[runs["policy"].isin(shown)].assign(
        policy=lambda frame: pd.Categorical(frame["policy"], categories=shown)).sort_values("policy")
               .assign(policy=lambda frame: frame["policy"].astype(str)), column)


def markdown_report(experiment: Experiment, runs: pd.DataFrame, policies: dict[str, dict],
                    class_names: list[str], not_ablated: tuple[str, ...], command: str | None = None,
                    class_counts: list[int] | None = None) -> str:
    """The evaluation as Markdown: the headline line, policies, means with intervals, paired differences,
    the --ablate table (`not_ablated`: the keys it never resets) and per-class deltas. `class_counts` (the runs'
    training images per class, given for long-tailed data): the headline and the first table in balanced test
    accuracy, and the per-class table with each class's count and shot group, and the groups' means."""
    seeds = sorted(runs["seed"].unique())
    epochs = next(iter(policies.values()))["config"]["epochs"]
    pct = f"{CONFIDENCE:.0%}"
    untuned = policies[BEST_NO_GAN]["source"] == "untuned"
    best_id = policies[BEST_GAN]["trial_id"]
    balanced = class_counts is not None
    column = "test_balanced_acc" if balanced else "test_acc"
    under = [line for line in (strongest_line(runs, column), control_line(runs, column)) if line]
    lines = [headline(runs, untuned, column), *under, "",
             f"# Evaluation: {experiment.meta.get('name', experiment.path.name)}", "",
             f"{len(seeds)} seeds ({seeds[0]}..{seeds[-1]}) per policy, {epochs} epochs each, trained on train + "
             f"val and tested on the test split of `{experiment.meta['data'].get('name')}` "
             f"({len(class_names)} classes). Intervals are {pct} t-intervals over seeds; differences are "
             f"paired by seed (same classifier initialisation and batch order) and given in percentage points.", ""]
    if command:
        lines += [f"Command: `{command}`", ""]

    lines += ["## Policies", ""]
    shown_keys = (*DESCRIBING_KEYS, "classifier", "classifier_lr")
    rows = []
    for name, policy in policies.items():
        inactive = inactive_keys(policy["config"])  # "-": a key the policy cannot use (no source without synthetics)
        rows.append([name, policy["source"], policy["trial_id"], ", ".join(policy["aliases"]) or "-",
                     *["-" if k in inactive else _cell(policy["config"][k]) for k in shown_keys]])
    lines += _markdown_table(["policy", "source", "from trial", "same config as", *shown_keys], rows) + [""]
    if untuned:
        lines += [f"**{BEST_NO_GAN} is untuned**: the search has no complete trial with synthetic_ratio 0, so it is "
                  f"`gan_off`, the best GAN trial's ({best_id}) settings with the GAN removed. Search "
                  f"synthetic_ratio with 0 in reach (experiment.baselines_first) for a tuned no-GAN baseline.", ""]
    else:
        lines += [f"{BEST_NO_GAN} is the best complete no-GAN trial of the search "
                  f"({policies[BEST_NO_GAN]['trial_id']}), with its own tuned settings.", ""]
    lines += [f"The ablations keep the best GAN trial's ({best_id}) settings: `no_aug` without synthetic data "
              f"(synthetic_ratio 0, pseudo labels: plain cross-entropy with K outputs), traditional augmentation "
              f"or cutout; `gan_off` the same with best_gan's traditional augmentation kept; "
              f"`{TRADITIONAL_PREFIX}<choice>` without synthetic data, with that traditional_aug. Policies "
              f"with the same config run once, under the first name (\"same config as\").", ""]
    if ORACLE in alias_map(policies):
        lines += [f"`{ORACLE}` is the positive control: {BEST_GAN}'s settings with held-out real training images "
                  f"(data.real_pool, in no split) as its synthetic source, a perfect generator, labelled with their "
                  f"class (pseudo) where {BEST_GAN}'s labeling would discard it (lsro, all_in_one). {ORACLE} - "
                  f"{BEST_NO_GAN} shows that this evaluation sees a gain when real-quality images are added; the gain "
                  f"recovery says what share of it {BEST_GAN}'s generator delivers.", ""]
    if f"{LONG_TAIL_PREFIX}cross_entropy" in alias_map(policies):
        lines += [f"`{LONG_TAIL_PREFIX}<method>` is {BEST_NO_GAN} with its class-balance keys set to one long-tail "
                  f"method at its paper's settings: `cross_entropy` (none), `resample` (class-balanced sampling), "
                  f"`reweight_drw` (effective-number weights, beta 0.9999, from 80 % of the epochs: Cao et al. "
                  f"2019's DRW) and `logit_adjust` (tau 1, Menon et al. 2021).", ""]

    metrics = [("test_balanced_acc", "Balanced test accuracy")] * balanced + [("test_acc", "Test accuracy")]
    if len(class_names) > 10:
        metrics.append(("test_top5", "Top-5 test accuracy"))
    for column, title in metrics:
        summary = summarize(runs, column)
        lines += [f"## {title} (mean over seeds, {pct} interval)", ""]
        lines += _markdown_table(["policy", "n", "mean", f"{pct} CI", "std"], [
            [r.policy, r.n, f"{r.mean:.4f}", f"[{r.ci_low:.4f}, {r.ci_high:.4f}]", f"{r.std:.4f}"]
            for r in summary.itertuples()]) + [""]
        differences = paired_differences(runs, column, pairs=[
            pair for pair in comparisons(runs) if role_of(pair[0]) != "variant"])
        differences["baseline"] = [_with_aliases(name, policies) for name in differences["baseline"]]
        lines += [f"### {title}: GAN policy - baseline, paired by seed (points)", ""]
        lines += _differences_table(differences, ["policy", "baseline"], pct)
    lines += _long_tail_methods_section(runs, policies, pct, column="test_balanced_acc" if balanced else "test_acc")
    variants = [name for name in alias_map(policies) if role_of(name) == "variant"]
    if variants:
        lines += _ablation_section(runs, policies, variants, not_ablated, pct)

    deltas = per_class_deltas(runs)
    lines += [f"## Per-class test accuracy: {BEST_GAN} - {BEST_NO_GAN} (mean over seeds)", ""]
    if class_counts is not None:  # balanced
        lines += _long_tail_table(deltas, class_counts)
    else:
        lines += _markdown_table(["class", BEST_NO_GAN, BEST_GAN, "delta"], [
            [r[1], f"{r[2]:.4f}", f"{r[3]:.4f}", f"{r[4]:+.4f}"] for r in deltas.itertuples()]) + [""]
    diverged = int(runs["diverged"].sum()) if "diverged" in runs else 0
    if diverged:
        lines += [f"{diverged} run(s) diverged (non-finite loss) and have no test score; they are left out.", ""]
    lines += _bank_section(runs)
    return "\n".join(lines)


def _long_tail_methods_section(runs: pd.DataFrame, policies: dict[str, dict], pct: str, column: str) -> list[str]:
    """Each long-tail method minus plain cross-entropy, paired by seed: does it go the way its paper found?"""
    plain, every = f"{LONG_TAIL_PREFIX}cross_entropy", alias_map(policies)
    names = [name for name in every if name.startswith(LONG_TAIL_PREFIX) and name != plain]
    if plain not in every or not names:
        return []
    differences = paired_differences(runs, column, pairs=[(name, plain) for name in names])
    differences["baseline"] = [_with_aliases(name, policies) for name in differences["baseline"]]
    differences["policy"] = [_with_aliases(name, policies) for name in differences["policy"]]
    return [f"### Long-tail methods - plain cross-entropy, paired by seed ({column}, points)", "",
            "Each should be above 0 on long-tailed data (resampling, re-weighting and logit adjustment each beat "
            "plain cross-entropy in their papers).", "", *_differences_table(differences, ["policy", "baseline"], pct)]


def _bank_section(runs: pd.DataFrame) -> list[str]:
    """Which runs loaded their pretrained generator from the generator bank and which trained it (each seed of a GAN
    policy needs the generator of its own seed: an honest interval includes the generator's variance)."""
    banked = runs[runs["generator_key"].fillna("").astype(str) != ""] if "generator_key" in runs else runs.iloc[:0]
    if banked.empty:
        return []
    reused = banked[banked["generator_reused"] == 1]
    lines = ["## Generator bank", "",
             f"{len(reused)} of {len(banked)} runs with a pretrained GAN loaded it from the generator bank (pretrained "
             f"by the search or by another run with the same GAN keys and seed); the others pretrained it there.", ""]
    return lines + _markdown_table(["policy", "seed", "generator", "reused"], [
        [row.policy, row.seed, f"`{row.generator_key}`", "yes" if row.generator_reused == 1 else "trained here"]
        for row in banked.itertuples()]) + [""]


def _long_tail_table(deltas: pd.DataFrame, class_counts: list[int]) -> list[str]:
    """The per-class table of long-tailed data: each class's training images and shot group (classifier.shot_groups:
    many > 0.2 n_max, few < 0.04 n_max), then the balanced accuracy of all classes and of each group."""
    from ganaug.classifier import SHOT_GROUPS, shot_groups  # lazy: it imports torch

    groups = shot_groups(class_counts)
    group_of = {label: name for name, labels in groups.items() for label in labels}
    rows = [[r[1], class_counts[i], group_of[i], f"{r[2]:.4f}", f"{r[3]:.4f}", f"{r[4]:+.4f}"]
            for i, r in enumerate(deltas.itertuples())]
    summaries = [("balanced (every class)", list(range(len(class_counts)))),
                 *[(f"{name} ({len(labels)} classes)", labels) for name, labels in groups.items() if labels]]
    for name, labels in summaries:
        means = deltas.iloc[labels, 1:].mean()
        rows.append([f"**{name}**", "", "", *(f"{value:+.4f}" if i == 2 else f"{value:.4f}"
                                               for i, value in enumerate(means))])
    n_max = max(class_counts)
    return [f"Groups by training images n_c of n_max = {n_max}: many n_c > {SHOT_GROUPS['many'] * n_max:g}, few "
            f"n_c < {SHOT_GROUPS['few'] * n_max:g} (the long-tail convention's 100 and 20 at n_max 500, scaled); "
            "balanced = the mean over classes.", "",
            *_markdown_table(["class", "n_c", "group", BEST_NO_GAN, BEST_GAN, "delta"], rows), ""]


def _ablation_section(runs: pd.DataFrame, policies: dict[str, dict], variants: list[str],
                      not_ablated: tuple[str, ...], pct: str) -> list[str]:
    best = policies[BEST_GAN]["config"]
    resolve = alias_map(policies)
    # What each variant reset: the keys where its config differs from best_gan's (its own key, and the partner
    # reset with it when a rule between keys asks for one).
    resets = {name.removeprefix(VARIANT_PREFIX): {k: v for k, v in policies[resolve[name]]["config"].items()
                                                  if v != best[k]} for name in variants}
    differences = ablation_differences(runs, variants)
    rows = []
    for r in _rows(differences):
        key = r.policy.removeprefix(VARIANT_PREFIX)
        others = [f"{k}: {_cell(best[k])} -> {_cell(v)}" for k, v in resets[key].items() if k != key]
        rows.append([r.policy, f"{_cell(best[key])} -> {_cell(resets[key][key])}",
                     "; ".join(others) or "-", r.pairs, f"{100 * r.mean_diff:+.2f}",
                     f"[{100 * r.ci_low:+.2f}, {100 * r.ci_high:+.2f}]", _p(r.p_value), f"{r.wins}/{r.pairs}"])
    return [f"## Ablation: each non-default key of {BEST_GAN} reset to its default (variant - {BEST_GAN}, points)",
            "", f"A negative difference: the searched value helps. Not reset: {', '.join(not_ablated)}.", "",
            *_markdown_table(["variant", "reset", "also reset (rule between keys)", "pairs", "mean diff",
                              f"{pct} CI", "p (paired t)", "wins"], rows), ""]


def _with_aliases(name: str, policies: dict[str, dict]) -> str:
    aliases = policies[name]["aliases"] if name in policies else []
    return f"{name} (= {', '.join(aliases)})" if aliases else name


def _differences_table(differences: pd.DataFrame, names: list[str], pct: str) -> list[str]:
    return _markdown_table([*names, "pairs", "mean diff", f"{pct} CI", "p (paired t)", "wins"], [
        [*[getattr(r, n) for n in names], r.pairs, f"{100 * r.mean_diff:+.2f}",
         f"[{100 * r.ci_low:+.2f}, {100 * r.ci_high:+.2f}]", _p(r.p_value), f"{r.wins}/{r.pairs}"]
        for r in _rows(differences)]) + [""]


def _rows(frame: pd.DataFrame) -> Iterable[Any]:
    """frame.itertuples(), each row's fields as the columns hold them (pandas-stubs types every field as any
    scalar, a date or bytes as well as the policy's name or a number)."""
    return frame.itertuples()


def plot_means(ax, runs: pd.DataFrame, column: str = "test_acc") -> None:
    """Each policy's mean with its t-interval as an error bar, and every seed's value as a dot."""
    summary = summarize(runs, column)
    x = np.arange(len(summary))
    errors = np.vstack([summary["mean"] - summary["ci_low"], summary["ci_high"] - summary["mean"]])
    colors = ["tab:gray" if role_of(p) in ("baseline", "ablation") else "tab:green" if role_of(p) == "control"
              else "tab:blue" for p in summary["policy"]]
    for i, (_, row) in enumerate(summary.iterrows()):  # i: the row's position, as colors and errors count
        values = runs.loc[runs["policy"] == row["policy"], column]
        ax.scatter(np.full(len(values), i) + 0.15, values, s=12, color=colors[i], alpha=0.5)
        ax.errorbar(i, row["mean"], yerr=errors[:, [i]], fmt="o", capsize=5, color=colors[i])
    # Steeper labels when there are many policies (long-tail methods, the oracle), so that neighbours do not overlap.
    ax.set_xticks(x, summary["policy"], rotation=20 if len(summary) <= 6 else 40, ha="right",
                  rotation_mode="anchor")
    ax.set_ylabel(f"{column} (mean, {CONFIDENCE:.0%} t-interval)")
    ax.grid(axis="y", alpha=0.3)


def plot_differences(ax, runs: pd.DataFrame, column: str = "test_acc",
                     differences: pd.DataFrame | None = None) -> None:
    """Forest plot of paired differences in points (default: GAN policy - baseline), with a line at zero."""
    if differences is None:
        differences = paired_differences(runs, column, pairs=[
            pair for pair in comparisons(runs) if role_of(pair[0]) != "variant"])
    y = np.arange(len(differences))[::-1]
    mean = 100 * differences["mean_diff"]
    errors = np.vstack([mean - 100 * differences["ci_low"], 100 * differences["ci_high"] - mean])
    ax.errorbar(mean, y, xerr=errors, fmt="o", capsize=4, color="tab:blue")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, [f"{r.policy} - {r.baseline}" for r in differences.itertuples()])
    ax.set_xlabel(f"{column} difference in points, paired by seed ({CONFIDENCE:.0%} t-interval)")
    ax.grid(axis="x", alpha=0.3)


def save_plot(runs: pd.DataFrame, path: str | Path, title: str = "", column: str = "test_acc") -> None:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend needed

    figure = Figure(figsize=(13, 5), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=[1, 1.2])
    plot_means(left, runs, column)
    plot_differences(right, runs, column)
    figure.suptitle(title)
    figure.savefig(path, dpi=120)


def save_ablation_plot(runs: pd.DataFrame, path: str | Path, title: str = "") -> None:
    from matplotlib.figure import Figure

    differences = ablation_differences(runs)
    figure = Figure(figsize=(8, 1.5 + 0.4 * len(differences)), layout="constrained")
    plot_differences(figure.subplots(), runs, differences=differences)
    figure.suptitle(title)
    figure.savefig(path, dpi=120)


def _markdown_table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _cell(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _p(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.3g}" if value >= 1e-4 else "< 1e-4"
