"""Benchmark: images per second of the joint step (GAN steps + classifier step on real + synthetic images).

For every gan_arch x classifier pair, one `pipeline.run` on CIFAR-shaped data (random uint8 3x32x32, 10
classes) with synthetic_ratio 0.5, acgan, pseudo labels: per real batch, one discriminator step, one
generator step, and one classifier step on the real batch plus half as many fresh synthetic images. The
figure is the pipeline's own `images_per_second` (real training images / seconds of the epoch's training
loop, validation excluded), the fastest of the timed epochs after one warm-up epoch. A classifier-only run
(synthetic_ratio 0: no GAN is built) per classifier shows what the GAN costs. Prints one JSON object.

    python benchmarks/trial_throughput.py            # 1,024 images, full widths (~4 minutes on 2 cores)
    python benchmarks/trial_throughput.py --quick    # 128 images, width 0.125 (the test suite)
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ganaug.config import TrialConfig
from ganaug.data import DataSpec, ImageData
from ganaug.trial import run


def random_image_data(num_train: int, num_classes: int = 10, shape: tuple[int, int, int] = (3, 32, 32),
                      num_eval: int = 256, seed: int = 0) -> ImageData:
    """CIFAR-shaped ImageData of random uint8 pixels and labels (train, and val = test of num_eval images).

    Random pixels learn nothing, but every step costs what it costs on real images of that shape.
    """
    rng = torch.Generator().manual_seed(seed)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=rng)
        labels = torch.randint(0, num_classes, (n,), generator=rng)
        # Every class at least once, so the class counts (minority-first conditioning) have no zero.
        labels[:num_classes] = torch.arange(min(n, num_classes))
        return images, labels

    train_x, train_y = split(num_train)
    val_x, val_y = split(num_eval)
    spec = DataSpec(
        channels=shape[0], height=shape[1], width=shape[2], num_classes=num_classes,
        class_names=tuple(str(k) for k in range(num_classes)),
        class_counts=tuple(torch.bincount(train_y, minlength=num_classes).tolist()),
    )
    return ImageData(train_x, train_y, val_x, val_y, val_x, val_y, spec)


def trial_speed(cfg: TrialConfig, data: ImageData) -> dict:
    """Run cfg (epochs = 1 warm-up + timed epochs) and return its fastest epoch's throughput and timing."""
    epochs = []
    started = time.perf_counter()
    run(cfg, data, lambda metrics, checkpoint=None, images=None: epochs.append(metrics))
    wall = time.perf_counter() - started
    timed = epochs[1:] or epochs  # the first epoch pays for allocator warm-up and first-call dispatch
    best = max(timed, key=lambda m: m["images_per_second"])
    return {
        "images_per_s": round(best["images_per_second"], 1),
        "epoch_seconds": round(best["epoch_seconds"], 3),
        "run_seconds": round(wall, 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128 images, width 0.125, 2 epochs (the test suite)")
    parser.add_argument("--images", type=int, default=1024, help="real training images per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is a warm-up")
    parser.add_argument("--width", type=float, default=1.0, help="gan_width and classifier_width")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--synthetic-ratio", type=float, default=0.5)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.batch_size, args.epochs, args.width = 128, 64, 2, 0.125
    if args.threads:
        torch.set_num_threads(args.threads)
    data = random_image_data(args.images)
    base = TrialConfig(
        gan="acgan", labeling="pseudo", synthetic_ratio=args.synthetic_ratio, batch_size=args.batch_size,
        gan_width=args.width, classifier_width=args.width, epochs=args.epochs, cas_epochs=0,
        checkpoint_every=10_000, sample_every=10_000, device=args.device, precision="fp32",
    )
    joint, classifier_only = {}, {}
    for classifier in CLASSIFIERS:
        classifier_only[classifier] = trial_speed(base.replace(classifier=classifier, synthetic_ratio=0.0), data)
        for gan_arch in GAN_ARCHITECTURES:
            speed = trial_speed(base.replace(classifier=classifier, gan_arch=gan_arch), data)
            speed["gan_cost"] = round(classifier_only[classifier]["images_per_s"] / speed["images_per_s"], 2)
            joint[f"{gan_arch}+{classifier}"] = speed
    result = {
        "joint_images_per_s": {name: speed["images_per_s"] for name, speed in joint.items()},
        "classifier_only_images_per_s": {name: speed["images_per_s"] for name, speed in classifier_only.items()},
        "joint": joint,
        "classifier_only": classifier_only,
        "images": args.images,
        "batch_size": args.batch_size,
        "synthetic_ratio": args.synthetic_ratio,
        "width": args.width,
        "data": "random uint8 3x32x32, 10 classes",
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result))
    return result


# The pairs measured: every GAN architecture against the two classifiers of the brief.
GAN_ARCHITECTURES = ("mlp", "dcgan")
CLASSIFIERS = ("mlp", "cnn")

if __name__ == "__main__":
    main()
