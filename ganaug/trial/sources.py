"""Where a trial's synthetic images come from (synthetic_source), behind one small interface: a source has
`num_classes`, `device`, `labelled` and `sample(labels, rng)` -> float images in [-1, 1] of those classes on its
device, drawn with the trial's RNG; `scored(labels, rng)` -> (images, a class score per image) where the source can
score its own images (filter_candidates without a teacher). Every synthetic-data key (ratio, schedule, warm-up,
spread, labeling, filtering, teacher, split BatchNorm, augment_synthetic) works on any source.

    gan      the trial's GAN itself (GANTrainer has this interface)
    pool     synthetic_pool images per class drawn once from the frozen GAN, kept in its bank entry (ImagePool)
    folder   a folder of the user's images, read like a dataset (data.read_image_folder; ImagePool)
    real     data.real_pool's held-out real images: the positive control (ImagePool)
    package.module:factory   the user's generator: factory(num_classes=, in_channels=, image_size=) returns an
             object with sample(labels, rng) -> images in [-1, 1] (ImportedSource)
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import torch

from ganaug.config import SCORING_FAMILIES, TrialConfig, is_import_path, registry
from ganaug.data import ClassIndex, DataSpec, ImageData, folder_source, to_float, to_uint8
from ganaug.errors import InputError
from ganaug.trial.bank import GeneratorBank

POOL_SEED = 7919  # a pool's own noise stream: cfg.seed + POOL_SEED, so that it is the same whoever draws it
POOL_CHUNK = 1024  # images per generator pass while a pool is drawn


class SourceError(InputError):
    """A synthetic source cannot be used as configured; the message names the key or file and what is valid."""


class Source(Protocol):
    num_classes: int
    device: torch.device
    labelled: bool  # False: the images carry no class (a flat folder); the labeling gives their targets

    def sample(self, labels: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor: ...


class ImagePool:
    """A fixed set of images as a source: for each label, one of its class's images drawn uniformly with replacement
    (unlabelled: any image); `scores`: a class score per image, computed once (a pool from a GAN with a class head),
    for filtering. uint8 on the device: 3 KB per 32x32 RGB image."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, num_classes: int, scores: torch.Tensor | None = None):
        self.x, self.y, self.num_classes, self.scores = x, y, num_classes, scores
        self.device = x.device
        self.labelled = bool((y >= 0).all())
        self.index = ClassIndex(y.clamp(min=0), num_classes) if self.labelled else None
        self.present = self.index.count > 0 if self.index is not None else None  # classes it holds images of

    def rows(self, labels: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        if self.index is None:
            return torch.randint(len(self.y), (len(labels),), generator=rng, device=self.device)
        return self.index.row_of_class(labels, rng)

    def sample(self, labels: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        return to_float(self.x[self.rows(labels, rng)])

    def scored(self, labels: torch.Tensor, rng: torch.Generator | None = None,
               autocast: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images as sample's, and the class scores computed once when the pool was drawn (no model runs here)."""
        if self.scores is None:
            raise SourceError("this pool has no class scores; valid: filter_candidates with teacher_ema > 0")
        rows = self.rows(labels, rng)
        return to_float(self.x[rows]), self.scores[rows]


class ImportedSource:
    """The user's generator (synthetic_source: package.module:factory), its images moved to the trial's device and
    checked: [n, C, H, W] of the dataset's shape, finite, in [-1, 1]."""

    def __init__(self, path: str, spec: DataSpec, device: torch.device):
        self.path, self.spec, self.device = path, spec, device
        self.num_classes, self.labelled = spec.num_classes, True
        self.generator = build_imported(path, spec)
        if isinstance(self.generator, torch.nn.Module):
            self.generator = self.generator.to(device)

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        images = torch.as_tensor(self.generator.sample(labels, rng)).to(self.device, torch.float32)
        check_images(images, len(labels), self.spec, f"synthetic_source={self.path!r}")
        return images


def build_imported(path: str, spec: DataSpec) -> Any:
    """factory(num_classes=K, in_channels=C, image_size=H) of `path` (package.module:factory); SourceError names the
    key when it cannot be imported, is not callable, or its object has no sample method."""
    where = f"synthetic_source={path!r}"
    module_name, _, attribute = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        raise SourceError(f"{where}: cannot be imported ({type(error).__name__}: {error}); valid: "
                          "package.module:factory on the Python path, returning an object with sample(labels, "
                          "rng)") from None
    if not callable(target):
        raise SourceError(f"{where}: {attribute} is not callable; valid: a factory function or class")
    try:
        generator = target(num_classes=spec.num_classes, in_channels=spec.channels, image_size=spec.height)
    except Exception as error:  # the user's code: any failure is theirs to read, in one line
        raise SourceError(f"{where}: factory(num_classes={spec.num_classes}, in_channels={spec.channels}, "
                          f"image_size={spec.height}) failed ({type(error).__name__}: "
                          f"{str(error).strip().splitlines()[0] if str(error).strip() else ''})") from None
    if not callable(getattr(generator, "sample", None)):
        raise SourceError(f"{where}: the factory's {type(generator).__name__} has no sample method; valid: an "
                          "object with sample(labels, rng) -> images in [-1, 1]")
    return generator


def check_images(images: torch.Tensor, n: int, spec: DataSpec, where: str) -> None:
    """Raise SourceError unless `images` are n finite images of the dataset's shape in [-1, 1]."""
    if tuple(images.shape) != (n, *spec.shape):
        raise SourceError(f"{where}: sample returned shape {tuple(images.shape)}; valid: ({n}, {spec.channels}, "
                          f"{spec.height}, {spec.width}), one image per label")
    if not torch.isfinite(images).all() or images.min() < -1.001 or images.max() > 1.001:
        raise SourceError(f"{where}: sample returned values outside [-1, 1] (or not finite); valid: images scaled "
                          "to [-1, 1], as x * 2 - 1 for images in [0, 1]")


# ----------------------------------------------------------------------------------------------
# A trial's source, once its generator (if any) is pretrained.

def build_source(cfg: TrialConfig, gan, data: ImageData, runtime, bank: GeneratorBank | None,
                 generator_key: str = "") -> Source | None:
    """The source a trial's classifier draws synthetic rows from (None: no synthetic data). `gan`: the trial's GAN
    once pretrained (gan and pool sources); `generator_key`: its bank entry, where a pool is kept."""
    if cfg.synthetic_ratio <= 0:
        return None
    if is_import_path(cfg.synthetic_source):
        return ImportedSource(cfg.synthetic_source, data.spec, runtime.device)
    return SOURCES[cfg.synthetic_source](cfg, gan, data, bank, generator_key)


def _gan(cfg: TrialConfig, gan, data: ImageData, bank: GeneratorBank | None, key: str) -> Source:
    return gan


def _pool(cfg: TrialConfig, gan, data: ImageData, bank: GeneratorBank | None, key: str) -> ImagePool:
    """synthetic_pool images per class of the frozen generator: loaded from its bank entry, or drawn once (and kept
    there) with a noise stream of its own, so that every trial that uses it draws from the same images."""
    stored = bank.load_pool(key, cfg.synthetic_pool) if bank is not None and key else None
    if stored is None:
        stored = draw_pool(gan, cfg.synthetic_pool, cfg.seed, scoring=cfg.gan in SCORING_FAMILIES)
        if bank is not None and key:
            bank.store_pool(key, cfg.synthetic_pool, stored)
    device = data.train_y.device
    scores = stored["scores"].to(device) if stored.get("scores") is not None else None
    return ImagePool(stored["x"].to(device), stored["y"].to(device), data.spec.num_classes, scores)


@torch.no_grad()
def draw_pool(gan, per_class: int, seed: int, scoring: bool) -> dict[str, Any]:
    """per_class images of every class from `gan`, as uint8 (what a pool stores), with the class head's score of each
    (scoring: the family has one) computed once."""
    rng = torch.Generator(gan.device).manual_seed(seed + POOL_SEED)
    labels = torch.arange(gan.num_classes, device=gan.device).repeat_interleave(per_class)
    x = torch.cat([to_uint8(gan.sample(part, rng)) for part in labels.split(POOL_CHUNK)])
    scores = torch.cat([gan.class_scores(to_float(part), y).float()
                        for part, y in zip(x.split(POOL_CHUNK), labels.split(POOL_CHUNK))]) if scoring else None
    return {"x": x.cpu(), "y": labels.cpu(), "scores": scores.cpu() if scores is not None else None}


def _folder(cfg: TrialConfig, gan, data: ImageData, bank: GeneratorBank | None, key: str) -> ImagePool:
    held = data.sources.get(folder_source(cfg.synthetic_folder))
    if held is None:
        raise SourceError(f"synthetic_folder={cfg.synthetic_folder!r}: not loaded with the data; valid: a folder "
                          "the search (or ganaug.data.attach_folders) read beside the dataset")
    return ImagePool(held[0], held[1], data.spec.num_classes)


def _real(cfg: TrialConfig, gan, data: ImageData, bank: GeneratorBank | None, key: str) -> ImagePool:
    held = data.sources.get("real")
    if held is None:
        raise SourceError("synthetic_source='real' draws held-out real images, but the data has none; valid: "
                          "data.real_pool: {per_class: N}")
    return ImagePool(held[0], held[1], data.spec.num_classes)


# ----------------------------------------------------------------------------------------------
# Registry: synthetic_source's choices (an import path is the user's own generator, ImportedSource).
SOURCES = registry("synthetic_source", {
    "gan": _gan,
    "pool": _pool,
    "folder": _folder,
    "real": _real,
})
