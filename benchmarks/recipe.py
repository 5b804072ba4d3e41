"""Benchmark: which classifier training recipe makes traditional augmentation help, and what each baseline reaches.

Trains the classifier alone (no GAN: `synthetic_ratio` 0, ganaug's own trial loop, `trial.run`) for every recipe
x traditional choice on one data split, one torch thread, and reports validation and test accuracy and the CPU
seconds of each run. The recipes are the classifier's policy keys (optimizer, lr_schedule, warmup_epochs,
label_smoothing, classifier, classifier_dropout, epochs); the choices are what a GAN policy must beat:
none, flip_translate, trivialaugment, randaugment, cutout (on flip_translate), mixup and cutmix (on flip_translate).

    python benchmarks/recipe.py --root ../shared/data/cifar10-small              # ~1.5 h on one core
    python benchmarks/recipe.py --root ../shared/data/cifar10-small --recipes today --choices none,flip_translate
    python benchmarks/recipe.py --quick                                          # digits, seconds (the test suite)

Prints one JSON object: every run, and per recipe the best choice, its test accuracy and flip_translate's gain
over no augmentation (points of test accuracy).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from ganaug.config import TrialConfig
from ganaug.data import load_data
from ganaug.trial import run

# Each recipe: the classifier's training keys. `today` is how every trial trained before the recipe keys existed.
RECIPES = {
    "today": dict(classifier="cnn", optimizer="adamw", classifier_lr=1e-3, lr_schedule="constant", epochs=12),
    # The peers' supervised baseline (PBA, Fast AutoAugment, TrivialAugment): SGD with Nesterov momentum and a
    # decaying schedule, here Smith's one-cycle with label smoothing; the cnn without its five Dropout layers.
    "onecycle_sgd_cnn": dict(classifier="cnn", classifier_dropout=0.0, optimizer="sgd", classifier_lr=0.05,
                             weight_decay=5e-4, lr_schedule="onecycle", warmup_epochs=12, label_smoothing=0.1,
                             epochs=40),
    # airbench's network and recipe (Jordan 2024) at a quarter of its width: a CPU budget.
    "onecycle_sgd_airbench": dict(classifier="airbench", classifier_width=0.25, optimizer="sgd", classifier_lr=0.2,
                                  weight_decay=5e-4, lr_schedule="onecycle", warmup_epochs=8, label_smoothing=0.2,
                                  epochs=30),
}
CHOICES = {
    "none": dict(traditional_aug="none"),
    "flip_translate": dict(traditional_aug="flip_translate"),
    "trivialaugment": dict(traditional_aug="trivialaugment"),
    "randaugment": dict(traditional_aug="randaugment"),
    "cutout": dict(traditional_aug="flip_translate", cutout=8),
    "mixup": dict(traditional_aug="flip_translate", mix="mixup", mix_alpha=1.0),
    "cutmix": dict(traditional_aug="flip_translate", mix="cutmix", mix_alpha=1.0),
}


def one_run(recipe: dict, choice: dict, data, seed: int, epochs_scale: float) -> dict:
    keys = {**recipe, **choice}
    epochs = max(2, round(keys["epochs"] * epochs_scale))
    if "warmup_epochs" in keys:
        keys["warmup_epochs"] = min(keys["warmup_epochs"] * epochs / keys["epochs"], epochs - 1)
    cfg = TrialConfig(**{**keys, "epochs": epochs, "batch_size": 128, "seed": seed, "cas_epochs": 0,
                         "checkpoint_every": epochs, "sample_every": epochs, "device": "cpu"})
    curve = []
    cpu, wall = time.process_time(), time.perf_counter()
    final = run(cfg, data, lambda metrics, **_: curve.append(metrics))
    return {"epochs": epochs, "val_acc": final["val_acc"], "test_acc": final["test_acc"],
            "train_acc": final["train_acc"], "cpu_seconds": round(time.process_time() - cpu, 1),
            "wall_seconds": round(time.perf_counter() - wall, 1),
            "val_curve": [round(row["val_acc"], 4) for row in curve]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", help="image folder with train/<class>/ and test/<class>/ (default: digits)")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated subset of {list(RECIPES)}")
    parser.add_argument("--choices", default=",".join(CHOICES), help=f"comma-separated subset of {list(CHOICES)}")
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="multiplies every recipe's epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="digits, 2-epoch runs of two choices (the test suite)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.epochs_scale, args.choices = 0.05, "none,flip_translate,cutmix"
    data_config = {"name": "imagefolder", "root": args.root, "val_fraction": 0.1} if args.root else \
        {"name": "digits", "val_fraction": 0.2, **({"samples_per_class": 60} if args.quick else {})}
    data = load_data(data_config)
    recipes = [name.strip() for name in args.recipes.split(",")]
    choices = [name.strip() for name in args.choices.split(",")]
    for name in (*recipes, *choices):
        if name not in RECIPES and name not in CHOICES:
            parser.error(f"{name!r} is neither a recipe ({', '.join(RECIPES)}) nor a choice ({', '.join(CHOICES)})")
    runs = []
    for recipe in recipes:
        for choice in choices:
            figures = one_run(RECIPES[recipe], CHOICES[choice], data, args.seed, args.epochs_scale)
            runs.append({"recipe": recipe, "choice": choice, **figures})
            print(f"[recipe] {recipe} + {choice}: val {figures['val_acc']:.4f} test {figures['test_acc']:.4f} "
                  f"({figures['epochs']} epochs, {figures['cpu_seconds']:.0f} CPU-s)", file=sys.stderr, flush=True)
    summary = {}
    for recipe in recipes:
        rows = {row["choice"]: row for row in runs if row["recipe"] == recipe}
        best = max(rows.values(), key=lambda row: row["val_acc"])  # chosen on validation, reported on test
        summary[recipe] = {"best_choice_by_val": best["choice"], "its_test_acc": best["test_acc"],
                           "its_cpu_seconds": best["cpu_seconds"],
                           "flip_translate_gain_points": round(100 * (rows["flip_translate"]["test_acc"] -
                                                                      rows["none"]["test_acc"]), 2)
                           if {"none", "flip_translate"} <= set(rows) else None}
    print(json.dumps({"data": data_config, "train_images": len(data.train_y), "val_images": len(data.val_y),
                      "test_images": len(data.test_y), "threads": args.threads, "recipes": {r: RECIPES[r]
                      for r in recipes}, "runs": runs, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
