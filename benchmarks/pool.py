"""Benchmark: what a trial that draws its synthetic rows from a pool costs, against a no-GAN trial with the same recipe
and a trial that runs its frozen generator for every batch.

One generator is pretrained once into a generator bank; then, on one torch thread, the same classifier recipe trains
four ways for the same epochs: no synthetic data; synthetic_ratio R from the frozen generator (synthetic_source: gan,
loaded from the bank); R from a pool of N images per class drawn once from it (synthetic_source: pool; the first
trial draws it, the measured one loads it); R from held-out real images (synthetic_source: real, the positive
control). Measured in one run: each trial's wall seconds (pretraining excluded: the bank holds the generator), the
ratio to the no-GAN trial, the target 1.15 x (1 + R) for the pool, and what a pool costs: bytes per image (uint8 on
the device) and the pool of the largest shipped space (search_spaces/*.yaml). Prints one JSON object.

    python benchmarks/pool.py --root ../shared/data/cifar10-small     # the worked example's recipe, ~12 min
    python benchmarks/pool.py --quick                                 # digits, seconds (the test suite)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

from ganaug.config import TrialConfig
from ganaug.data import load_data
from ganaug.trial import GeneratorBank, run

ROOT = Path(__file__).resolve().parents[1]
# The worked example's classifier recipe and generator (search_spaces/cifar10_banked.yaml).
RECIPE = dict(classifier="cnn", classifier_dropout=0.0, optimizer="sgd", classifier_lr=0.05, weight_decay=5e-4,
              lr_schedule="onecycle", warmup_epochs=1, label_smoothing=0.1, batch_size=128,
              traditional_aug="flip_translate")
GENERATOR = dict(gan="acgan", gan_arch="dcgan", gan_width=0.5, diffaugment="translation,cutout", g_ema=0.995,
                 acgan_weight=0.2, acgan_fake_class_loss=False, gan_freeze=True)
QUICK_CLASSIFIER, QUICK_GAN = dict(classifier="mlp", classifier_width=0.25, batch_size=64), \
    dict(gan_arch="mlp", gan_width=0.25, diffaugment="")


def largest_shipped_pool() -> dict:
    """The pool of each shipped space that draws one: images per class x classes x bytes an image."""
    from ganaug.space import load_space

    sizes = {}
    for path in sorted((ROOT / "search_spaces").glob("*.yaml")):
        space = load_space(path)
        if "pool" in space.reachable("synthetic_source"):
            per_class = max(int(value) for value in space.reachable("synthetic_pool"))
            classes = {"cifar100": 100}.get(space.data["name"], len(space.data.get("classes") or []) or 10)
            image = 3 * 32 * 32 if space.data["name"] != "digits" else 64
            sizes[path.name] = per_class * classes * image
    name = max(sizes, key=sizes.get) if sizes else None
    return {"space": name, "bytes": sizes.get(name, 0), "under_1_gib": sizes.get(name, 0) < 2 ** 30}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", help="an imagefolder dataset (the worked example: ../shared/data/cifar10-small)")
    parser.add_argument("--samples-per-class", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--pretrain-epochs", type=int, default=2)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--pool", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="digits, MLPs, 1 epoch (the test suite)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.epochs, args.pretrain_epochs, args.pool = 1, 1, 20
        data = load_data({"name": "digits", "samples_per_class": 40, "val_fraction": 0.2,
                          "real_pool": {"per_class": 20}})
        recipe, generator = {**RECIPE, **QUICK_CLASSIFIER}, {**GENERATOR, **QUICK_GAN}
    else:
        data = load_data({"name": "imagefolder", "root": args.root, "samples_per_class": args.samples_per_class,
                          "real_pool": {"per_class": args.samples_per_class}, "val_fraction": 0.1})
        recipe, generator = RECIPE, GENERATOR
    bank = GeneratorBank(tempfile.mkdtemp(prefix="pool_bank_"))
    base = dict(**recipe, epochs=args.epochs, cas_epochs=0, checkpoint_every=args.epochs, sample_every=args.epochs)
    synthetic = dict(synthetic_ratio=args.ratio, gan_pretrain_epochs=args.pretrain_epochs, **generator)
    settings = {
        "no_gan": TrialConfig(**base),
        "frozen_gan": TrialConfig(**base, **synthetic),
        "pool": TrialConfig(**base, **synthetic, synthetic_source="pool", synthetic_pool=args.pool),
        "real": TrialConfig(**base, synthetic_ratio=args.ratio, synthetic_source="real"),
    }
    quiet = lambda *args, **kwargs: None
    started = time.perf_counter()
    run(settings["pool"], data, quiet, bank=bank)  # pretrains the generator into the bank and draws its pool once
    prepare = time.perf_counter() - started
    figures = {}
    for name, cfg in settings.items():
        started = time.perf_counter()
        final = run(cfg, data, quiet, bank=bank)
        figures[name] = {"seconds": round(time.perf_counter() - started, 2), "val_acc": round(final["val_acc"], 4)}
    no_gan = figures["no_gan"]["seconds"]
    for name in settings:
        figures[name]["ratio_to_no_gan"] = round(figures[name]["seconds"] / no_gan, 3)
    target = 1.15 * (1 + args.ratio)
    channels, height, width = data.spec.shape
    print(json.dumps({
        "data": "digits" if args.quick else args.root, "train_images": len(data.train_y), "epochs": args.epochs,
        "synthetic_ratio": args.ratio, "pool_per_class": args.pool, "threads": 1,
        "generator_and_pool_seconds": round(prepare, 1), "trials": figures,
        "pool_target_ratio": round(target, 3), "meets_target": figures["pool"]["ratio_to_no_gan"] <= target,
        "pool_bytes_per_image": channels * height * width,
        "pool_bytes": channels * height * width * args.pool * data.spec.num_classes,
        "largest_shipped_pool": largest_shipped_pool(),
        "settings": {name: yaml.safe_load(yaml.safe_dump(cfg.identity())) for name, cfg in settings.items()},
    }), flush=True)


if __name__ == "__main__":
    main()
