"""Benchmark: how good are the generators ganaug trains, against GAN training wall time?

For each GAN setting (architecture, family, loss, D options), train the GAN alone on the real training split
(what `gan_pretrain_epochs` does inside a trial: GAN steps on shuffled real batches, no classifier) and, at
evenly spaced points of a wall-time budget, measure its samples:

- `synthetic_diversity`: within-class spread of samples over that of real images, in ganaug's fixed random
  feature space (metrics.image_features): ~0 = collapse, ~1 = as varied as the data;
- `frechet_distance`: between samples and real training images in that space (lower is better; the
  real-vs-real figure at the same n, `reference.frechet_distance_real`, is the floor);
- `cas`: a fresh classifier trained only on samples, tested on real validation images, and `cas_ratio`: CAS
  over the same classifier trained on as many real images for the same budget (`reference.real_accuracy`).

Training time excludes the measurements. Prints one JSON object; writes a plot and each setting's last sample
grid (rows = classes) next to `--out`.

    python benchmarks/gan_quality.py --root ../shared/data/cifar10-small --minutes 20 --jobs 2 --threads 1
    python benchmarks/gan_quality.py --root ../shared/data/cifar10-small --minutes 10 --settings dcgan-cgan-hinge
    python benchmarks/gan_quality.py --quick            # digits, seconds per setting (the test suite)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import torch

from ganaug.classifier import classification_accuracy_score, real_accuracy_score
from ganaug.config import TrialConfig
from ganaug.data import batch_indices, load_data, to_float, to_uint8
from ganaug.gan import GANTrainer
from ganaug.gan.quality import (
    _standardize,
    frechet_distance,
    image_features,
    synthetic_diversity,
    synthetic_frechet_distance,
)
from ganaug.trial.reporter import make_grid, save_png

# Each setting: TrialConfig GAN keys. Widths keep a step on 2 CPU cores at 0.1-1 s (32x32, batch 64).
SETTINGS = {
    # The prior work's generators, as the quickstart and cifar10_small spaces use them.
    "mlp-acgan": dict(gan="acgan", gan_arch="mlp", gan_width=0.5),
    "mlp-cgan": dict(gan="cgan", gan_arch="mlp", gan_width=0.5),
    # DCGAN with the small-data parts: DiffAugment (Zhao et al. 2020) and an EMA generator.
    "dcgan-acgan": dict(gan="acgan", gan_arch="dcgan", gan_width=0.5, diffaugment="translation,cutout",
                        g_ema=0.999),
    "dcgan-cgan-hinge": dict(gan="cgan", gan_arch="dcgan", gan_width=0.5, gan_loss="hinge", d_spectral_norm=True,
                             diffaugment="translation,cutout", g_ema=0.999),
    # ACGAN with a light class loss that D learns from real images only: G keeps more of its variety.
    "dcgan-acgan-light": dict(gan="acgan", gan_arch="dcgan", gan_width=0.5, acgan_weight=0.2,
                              acgan_fake_class_loss=False, diffaugment="translation,cutout", g_ema=0.999),
    "dcgan-acgan-stddev": dict(gan="acgan", gan_arch="dcgan", gan_width=0.5, d_minibatch="stddev",
                               diffaugment="translation,cutout", g_ema=0.999),
    # SNGAN's optimiser settings on the DCGAN networks: Adam beta1 = 0, two D steps per G step.
    "dcgan-cgan-hinge-d2": dict(gan="cgan", gan_arch="dcgan", gan_width=0.5, gan_loss="hinge", d_spectral_norm=True,
                                gan_beta1=0.0, d_steps=2, diffaugment="translation,cutout", g_ema=0.999),
    # SNGAN (Miyato et al. 2018): residual G and D, spectral norm, hinge loss, Adam beta1 = 0.
    "resnet-cgan-hinge": dict(gan="cgan", gan_arch="resnet", gan_width=0.25, gan_loss="hinge", gan_beta1=0.0,
                              diffaugment="translation,cutout", g_ema=0.999),
}
QUICK_SETTINGS = ("mlp-cgan", "dcgan-cgan-hinge")


def measure(gan: GANTrainer, data, cfg: TrialConfig, real_accuracy: float, args, rng: torch.Generator) -> dict:
    """The quality figures of gan's current samples (fixed noise seeds, so points compare)."""
    started = time.perf_counter()
    num_classes = data.spec.num_classes
    noise = lambda offset: torch.Generator().manual_seed(1000 + offset)  # noqa: E731
    figures = {
        "synthetic_diversity": synthetic_diversity(gan, data.train_x, data.train_y, num_classes,
                                                   per_class=args.per_class, rng=noise(0)),
        "frechet_distance": synthetic_frechet_distance(gan, data.train_x, args.fd_samples, rng=noise(1)),
    }
    cas = classification_accuracy_score(cfg, data.spec, gan, data.val_x, data.val_y, torch.device("cpu"),
                                        args.cas_epochs, rng=noise(2))
    figures.update(cas=cas, cas_ratio=cas / real_accuracy)
    figures["measure_seconds"] = time.perf_counter() - started
    return figures


def train_setting(name: str, keys: dict, data, real_accuracy: float, args) -> dict:
    """Train one GAN for args.minutes of wall time, measuring at args.points evenly spaced moments."""
    cfg = TrialConfig(**{**keys, "batch_size": args.batch_size, "classifier": "mlp", "cas_epochs": args.cas_epochs,
                         "seed": args.seed})
    torch.manual_seed(args.seed)
    rng = torch.Generator().manual_seed(args.seed)
    gan = GANTrainer(cfg, data.spec, torch.device("cpu"))
    budget = args.minutes * 60
    due = [budget * (k + 1) / args.points for k in range(args.points)]
    curve, steps, trained = [], 0, 0.0
    print(f"[gan_quality] {name}: {args.minutes} min of GAN training, {args.points} measurements",
          file=sys.stderr, flush=True)
    while due:
        for index in batch_indices(len(data.train_y), cfg.batch_size, rng, "cpu"):
            if len(index) < 2:
                continue
            started = time.perf_counter()
            losses = gan.train_step(to_float(data.train_x[index]), data.train_y[index], cfg.d_real_fraction,
                                    rng)
            trained += time.perf_counter() - started
            steps += 1
            if trained >= due[0]:
                due.pop(0)
                point = {"train_seconds": round(trained, 1), "steps": steps,
                         "d_loss": losses["d_loss"].item(), "g_loss": losses["g_loss"].item(),
                         **measure(gan, data, cfg, real_accuracy, args, rng)}
                curve.append(point)
                print(f"[gan_quality] {name}: {steps} steps, {trained / 60:.1f} min: "
                      f"diversity {point['synthetic_diversity']:.3f}, FD {point['frechet_distance']:.1f}, "
                      f"CAS {point['cas']:.3f} (ratio {point['cas_ratio']:.2f})", file=sys.stderr, flush=True)
                if not due:
                    break
    grid_labels = torch.arange(data.spec.num_classes).repeat_interleave(10)
    grid = to_uint8(make_grid(gan.sample(grid_labels, torch.Generator().manual_seed(7)).float(), nrow=10)).cpu()
    grid_path = Path(args.out).with_name(f"{Path(args.out).stem}_{name}.png")
    save_png(grid, grid_path)
    seconds_per_step = curve[-1]["train_seconds"] / max(curve[-1]["steps"], 1)
    return {"config": keys, "seconds_per_step": seconds_per_step, "curve": curve, "final": curve[-1],
            "sample_grid": str(grid_path)}


def _train_in_worker(name: str, keys: dict, data_config: dict, real_accuracy: float, args) -> dict:
    torch.set_num_threads(args.threads)
    return train_setting(name, keys, load_data(data_config), real_accuracy, args)


def reference(data, args) -> dict:
    """What real images score: the cas_ratio denominator and the real-vs-real Fréchet distance at the same n."""
    cfg = TrialConfig(batch_size=args.batch_size, classifier="mlp", seed=args.seed)
    real_accuracy = real_accuracy_score(cfg, data.spec, data.train_x, data.train_y, data.val_x, data.val_y,
                                        torch.device("cpu"), args.cas_epochs,
                                        rng=torch.Generator().manual_seed(args.seed))
    n = min(args.fd_samples, len(data.val_x), len(data.train_x))
    subset = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(0))[:n]
    # Held-out real images against the training images: the distance a perfect generator would reach at this n.
    real = image_features(data.train_x[subset])
    held_out = image_features(data.val_x[:n])
    fd_real = frechet_distance(_standardize(held_out, real), _standardize(real, real))
    return {"real_accuracy": real_accuracy, "frechet_distance_real": fd_real, "frechet_samples": n}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("synthetic_diversity", "diversity (1 = as varied as real)"), ("cas_ratio", "CAS ratio"),
            ("frechet_distance", "Fréchet distance (random features)")]
    figure, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4))
    for name, setting in results["settings"].items():
        minutes = [point["train_seconds"] / 60 for point in setting["curve"]]
        for axis, (key, _label) in zip(axes, keys):
            axis.plot(minutes, [point[key] for point in setting["curve"]], marker="o", label=name)
    for axis, (_key, label) in zip(axes, keys):
        axis.set_xlabel("GAN training minutes (2 CPU cores)" if results["device"] == "cpu" else "GAN training minutes")
        axis.set_title(label)
        axis.grid(alpha=0.3)
    axes[2].axhline(results["reference"]["frechet_distance_real"], color="gray", linestyle="--", label="real vs real")
    axes[1].axhline(0.8, color="gray", linestyle=":", label="target 0.8")
    axes[0].axhline(0.5, color="gray", linestyle=":", label="target 0.5")
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", help="image folder with train/<class>/ and test/<class>/ (default: digits)")
    parser.add_argument("--minutes", type=float, default=30.0, help="GAN training wall time per setting")
    parser.add_argument("--points", type=int, default=5, help="measurements per setting, evenly spaced")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated subset of {list(SETTINGS)}")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cas-epochs", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=64, help="samples per class for synthetic_diversity")
    parser.add_argument("--fd-samples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads per setting")
    parser.add_argument("--jobs", type=int, default=1, help="settings trained side by side (processes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON path; the plot and grids go beside it (default: gan_quality.json, "
                                      "or a temporary folder with --quick)")
    parser.add_argument("--quick", action="store_true", help="digits, a few seconds per setting (the test suite)")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.points, args.cas_epochs, args.per_class, args.fd_samples = 0.05, 2, 1, 16, 200
        args.settings = ",".join(QUICK_SETTINGS)
    if args.out is None:
        args.out = str(Path(tempfile.mkdtemp(prefix="gan_quality_")) / "gan_quality.json") if args.quick \
            else "gan_quality.json"
    torch.set_num_threads(args.threads)
    names = [name.strip() for name in args.settings.split(",") if name.strip()]
    unknown = [name for name in names if name not in SETTINGS]
    if unknown:
        parser.error(f"--settings: unknown {unknown}; valid: {', '.join(SETTINGS)}")
    data_config = ({"name": "imagefolder", "root": args.root, "val_fraction": 0.1} if args.root
                   else {"name": "digits", "val_fraction": 0.2})
    data = load_data(data_config)
    if args.quick:  # smaller GANs: seconds, not minutes
        settings = {name: {**SETTINGS[name], "gan_width": 0.25, "latent_dim": 32} for name in names}
    else:
        settings = {name: SETTINGS[name] for name in names}
    results = {
        "data": data_config, "num_train": len(data.train_y), "device": "cpu", "threads": args.threads,
        "jobs": args.jobs,
        "minutes_per_setting": args.minutes, "batch_size": args.batch_size, "cas_classifier": "mlp",
        "cas_epochs": args.cas_epochs, "torch": torch.__version__,
        "reference": reference(data, args), "settings": {},
    }
    real_accuracy = results["reference"]["real_accuracy"]
    if args.jobs > 1:
        # Side by side, one process and args.threads threads each: the same wall time buys several settings.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            futures = {name: pool.submit(_train_in_worker, name, keys, data_config, real_accuracy, args)
                       for name, keys in settings.items()}
            results["settings"] = {name: future.result() for name, future in futures.items()}
    else:
        for name, keys in settings.items():
            results["settings"][name] = train_setting(name, keys, data, real_accuracy, args)
    finals = {name: setting["final"] for name, setting in results["settings"].items()}
    best = max(finals, key=lambda name: min(finals[name]["synthetic_diversity"] / 0.5, finals[name]["cas_ratio"] / 0.8))
    results["best"] = {"setting": best, **{k: finals[best][k] for k in
                                           ("synthetic_diversity", "cas_ratio", "cas", "frechet_distance")}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results["json"] = str(out)
    out.write_text(json.dumps(results, indent=1))
    plot(results, out.with_suffix(".png"))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
