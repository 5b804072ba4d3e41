"""Benchmark: one epoch of augmented, normalised CIFAR-shaped batches, our device-side path vs a DataLoader.

Ours: the whole uint8 dataset as one tensor on the device; per batch `to_float` + `augment` (flip + translate
by up to 4 px) + per-channel normalisation, all whole-batch tensor ops. Baseline: torchvision's standard
`RandomCrop(32, padding=4)`, `RandomHorizontalFlip`, `ToTensor`, `Normalize` through a `DataLoader`
(num_workers=2, persistent workers) over the same images as PIL images. The same again with TrivialAugment
Wide: ours `traditional_augment(x, "trivialaugment")` (flip + translate, then one of 14 ops per image, in
batched tensor ops), the baseline with torchvision's `TrivialAugmentWide` after the flip. Same process, same
run, one warm-up epoch each, then the fastest of --repeats timed epochs. Prints one JSON object: `ratio` is
flip + translate's, `trivialaugment.ratio` TrivialAugment's.

    python benchmarks/data_pipeline.py                        # 5,000 random uint8 32x32x3 images
    python benchmarks/data_pipeline.py --root /work/shared/data/cifar10-small   # the real JPEGs instead
    python benchmarks/data_pipeline.py --quick                # 1,000 images, for the test suite
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from ganaug.augment import flip_translate, traditional_augment
from ganaug.data import batch_indices, load_data, to_float


class PilImages(Dataset):
    """The baseline's view of the images: a list of PIL images run through torchvision transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        from PIL import Image

        self.images = [Image.fromarray(image) for image in images.permute(0, 2, 3, 1).numpy()]
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(self.images[index]), self.labels[index]


def load_images(root: str | None, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` uint8 [N, 3, 32, 32] images: random, or the first of an image folder's train + val split."""
    if root is None:
        rng = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=rng)
        return images, torch.randint(0, 10, (count,), generator=rng)
    data = load_data({"name": "imagefolder", "root": root, "image_size": 32, "grayscale": False})
    data = data.train_and_val()
    return data.train_x[:count], data.train_y[:count]


def timed(epoch, repeats: int) -> float:
    """Seconds of the fastest of `repeats` epochs, after one untimed warm-up epoch.

    The fastest, as timeit reports: on a shared machine slower epochs measure the neighbours, not the code.
    """
    epoch()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        epoch()
        seconds.append(time.perf_counter() - started)
    return min(seconds)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="image folder of 32x32 images (default: random images)")
    parser.add_argument("--images", type=int, default=5000, help="images per epoch")
    parser.add_argument("--quick", action="store_true", help="1,000 images (for the test suite)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per path, fastest counts")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device of our path")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of our path (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    count = 1000 if args.quick else args.images
    device = torch.device(args.device)
    images, labels = load_images(args.root, count, args.seed)
    count = len(images)

    # Per-channel statistics of the images, in each path's own value range.
    unit = images.to(torch.float32).div(255)
    mean, std = unit.mean(dim=(0, 2, 3)), unit.std(dim=(0, 2, 3))

    # Ours: dataset on the device, whole-batch ops.
    x, y = images.to(device), labels.to(device)
    shape = (1, 3, 1, 1)
    # to_float maps [0, 1] -> [-1, 1], so the same normalisation there is (v - (2m - 1)) / (2s).
    ours_mean, ours_std = (2 * mean - 1).view(shape).to(device), (2 * std).view(shape).to(device)
    rng = torch.Generator(device).manual_seed(args.seed)

    def ours_epoch(augmentation) -> None:
        for index in batch_indices(count, args.batch_size, rng, device):
            batch = (augmentation(to_float(x[index])) - ours_mean) / ours_std
            batch_labels = y[index]
        if device.type == "cuda":
            torch.cuda.synchronize()
        assert batch.shape[1:] == (3, 32, 32) and len(batch_labels) == len(batch)

    flip = lambda images: flip_translate(images, rng)
    trivialaugment = lambda images: traditional_augment(images, "trivialaugment", rng)

    # Baselines: the standard torchvision pipelines.
    from torchvision import transforms

    def loader_epoch(*augmentations) -> Callable[[], None]:
        transform = transforms.Compose([
            transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), *augmentations,
            transforms.ToTensor(), transforms.Normalize(mean.tolist(), std.tolist()),
        ])
        loader = DataLoader(PilImages(images, labels, transform), batch_size=args.batch_size, shuffle=True,
                            num_workers=args.workers, persistent_workers=args.workers > 0)

        def epoch() -> None:
            for batch, _ in loader:  # noqa: B007 -- producing the batches is the work measured
                pass
            assert batch.shape[1:] == (3, 32, 32)

        return epoch

    ours_seconds = timed(lambda: ours_epoch(flip), args.repeats)
    loader_seconds = timed(loader_epoch(), args.repeats)
    ours_trivial_seconds = timed(lambda: ours_epoch(trivialaugment), args.repeats)
    loader_trivial_seconds = timed(loader_epoch(transforms.TrivialAugmentWide()), args.repeats)
    result = {
        "ours_images_per_s": round(count / ours_seconds, 1),
        "dataloader_images_per_s": round(count / loader_seconds, 1),
        "ratio": round(loader_seconds / ours_seconds, 2),
        "trivialaugment": {
            "ours_images_per_s": round(count / ours_trivial_seconds, 1),
            "dataloader_images_per_s": round(count / loader_trivial_seconds, 1),
            "ratio": round(loader_trivial_seconds / ours_trivial_seconds, 2),
        },
        "images": count,
        "batch_size": args.batch_size,
        "device": device.type,
        "torch_threads": torch.get_num_threads(),
        "source": args.root or "random",
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
