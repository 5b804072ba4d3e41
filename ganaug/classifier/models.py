"""Downstream image classifiers built from the dataset's DataSpec: the built-in mlp, cnn and small resnet, or any
PyTorch model that `classifier: torchvision:NAME` or `classifier: package.module:factory` names.

Input: float images in [-1, 1], NCHW (channels_last memory works too); output: logits [B, num_outputs].
Real and synthetic images share one forward pass (see DESIGN.md), so every BatchNorm sees both, unless the
classifier is built with split_bn: then synthetic rows get their own BatchNorm (SplitBatchNorm, synthetic_rows).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from ganaug.config import ConfigError, is_import_path, registry
from ganaug.errors import did_you_mean

# torchvision ResNets get the CIFAR stem (3x3 stride-1 conv1, no max-pool) for images at most this many px a side:
# ImageNet's 7x7 stride-2 conv and max-pool would shrink 32x32 to 8x8 before the first residual block.
SMALL_INPUT_PX = 64


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def mlp_classifier(spec, num_outputs: int, width: float = 1.0, dropout: float = 1.0) -> nn.Module:
    """Flatten -> 512-1024-2048 (x width), each BatchNorm1d + ReLU + dropout 0.2 (x dropout) -> logits."""
    layers: list[nn.Module] = [nn.Flatten()]
    previous = spec.channels * spec.height * spec.width
    for hidden in (512, 1024, 2048):
        hidden = _scaled(hidden, width)
        layers += [nn.Linear(previous, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), *_dropout(0.2 * dropout)]
        previous = hidden
    layers.append(nn.Linear(previous, num_outputs))
    return nn.Sequential(*layers)


def cnn_classifier(spec, num_outputs: int, width: float = 1.0, dropout: float = 1.0) -> nn.Module:
    """Three [3x3 conv + BN + ReLU + 2x2 max-pool + dropout 0.25] blocks (32-64-128 x width), dense 256, dropout
    0.5 (both rates x dropout: classifier_dropout 0 removes every Dropout layer).

    A block pools only while its map is >= 2 px, so 8x8 digits go 8 -> 4 -> 2 -> 1 and nothing smaller fails.
    """
    layers, previous, height, width_px = [], spec.channels, spec.height, spec.width
    for channels in (32, 64, 128):
        channels = _scaled(channels, width)
        layers += [nn.Conv2d(previous, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                   nn.ReLU()]
        if min(height, width_px) >= 2:
            layers.append(nn.MaxPool2d(2))
            height, width_px = height // 2, width_px // 2
        layers += _dropout(0.25 * dropout)
        previous = channels
    dense = _scaled(256, width)
    layers += [
        nn.Flatten(), nn.Linear(previous * height * width_px, dense), nn.BatchNorm1d(dense), nn.ReLU(),
        *_dropout(0.5 * dropout), nn.Linear(dense, num_outputs),
    ]
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """x + block(x)."""

    def __init__(self, *block: nn.Module):
        super().__init__()
        self.block = nn.Sequential(*block)

    def forward(self, x):
        return x + self.block(x)


class Scale(nn.Module):
    """Multiply by a constant (ResNet-9's 0.125 logit scale keeps the initial softmax soft)."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def _conv_bn(c_in: int, c_out: int, pool: bool = False) -> list[nn.Module]:
    # Pool before BN (airbench order): same function as after ReLU, on 4x fewer pixels.
    pool_layers = [nn.MaxPool2d(2)] if pool else []
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), *pool_layers, nn.BatchNorm2d(c_out), nn.ReLU()]


def resnet_classifier(spec, num_outputs: int, width: float = 1.0, dropout: float = 1.0) -> nn.Module:
    """ResNet-9 (Page's DAWNBench net, airbench's ancestor): prep conv 64, stages of 128 / 256 / 512 (x width)
    each halving the map, residual blocks in stages 1 and 3, global max pool, linear, x0.125.

    Stages pool only while the map is >= 2 px, so 8x8 and 28x28 inputs work as well as 32x32.
    """
    prep = _scaled(64, width)
    layers, previous, size = _conv_bn(spec.channels, prep), prep, min(spec.height, spec.width)
    for channels, residual in ((128, True), (256, False), (512, True)):
        channels = _scaled(channels, width)
        layers += _conv_bn(previous, channels, pool=size >= 2)
        size = size // 2 if size >= 2 else size
        if residual:
            layers.append(Residual(*_conv_bn(channels, channels), *_conv_bn(channels, channels)))
        previous = channels
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(previous, num_outputs, bias=False),
               Scale(0.125)]
    return nn.Sequential(*layers)


def _dropout(rate: float) -> list[nn.Module]:
    # No layer at rate 0, so classifier_dropout 0 builds the same network as one written without dropout.
    return [nn.Dropout(rate)] if rate > 0 else []


class FrozenScaleBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose scale stays 1 (only its bias learns) and whose running statistics follow the batches
    quickly (momentum 0.4), as airbench's: with few steps per epoch, slow statistics lag the weights."""

    def __init__(self, num_features: int):
        super().__init__(num_features, eps=1e-12, momentum=0.4)
        self.weight.requires_grad_(False)


def _airbench_block(c_in: int, c_out: int, pool: bool) -> list[nn.Module]:
    pool_layers = [nn.MaxPool2d(2)] if pool else []
    return [nn.Conv2d(c_in, c_out, 3, padding="same", bias=False), *pool_layers, FrozenScaleBatchNorm(c_out),
            nn.GELU(), nn.Conv2d(c_out, c_out, 3, padding="same", bias=False), FrozenScaleBatchNorm(c_out),
            nn.GELU()]


def airbench_classifier(spec, num_outputs: int, width: float = 1.0, dropout: float = 1.0) -> nn.Module:
    """airbench's network (Jordan 2024, cifar10-airbench), our build: a 2x2 stem conv with bias (2 x 4 x channels
    maps: airbench's whitening layer's shape, trained here instead of set from the data), GELU, then three
    [conv3x3, 2x2 max-pool, BN, GELU, conv3x3, BN, GELU] blocks of 64 / 256 / 256 channels (x width), a global
    max-pool and a linear layer scaled by 1/9; BatchNorm with a fixed scale and fast statistics, no dropout.
    Made to train fast with SGD, a short one-cycle schedule and label smoothing (airbench94: 0.2).

    Blocks pool only while the map is >= 2 px, so 8x8 and 28x28 inputs work as well as 32x32.
    """
    stem = 8 * spec.channels
    layers = [nn.Conv2d(spec.channels, stem, 2, bias=True), nn.GELU()]
    previous, size = stem, min(spec.height, spec.width) - 1
    for channels in (64, 256, 256):
        channels = _scaled(channels, width)
        layers += _airbench_block(previous, channels, pool=size >= 2)
        size, previous = (size // 2 if size >= 2 else size), channels
    layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(previous, num_outputs, bias=False), Scale(1 / 9)]
    return nn.Sequential(*layers)


class SplitBatchNorm(nn.Module):
    """A BatchNorm layer and its twin for synthetic images (AdvProp, Xie et al. 2020).

    In training, inside `synthetic_rows(model, start)`, rows [0, start) are normalised by the main layer's
    batch statistics and affine parameters and rows [start, B) by the twin's, in the same forward pass; each
    layer updates only its own running statistics. Evaluation, and any forward outside synthetic_rows, uses the
    main layer alone: the classifier is judged as a classifier of real images. A part with fewer than two rows
    cannot form batch statistics and joins the other part.
    """

    def __init__(self, main: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.main = main
        self.synthetic = copy.deepcopy(main)
        self.start: int | None = None  # first synthetic row of the current batch; None = no synthetic rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start, n = self.start, len(x)
        if not self.training or start is None or n - start < 2:
            return self.main(x)
        if start < 2:
            return self.synthetic(x)
        return torch.cat([self.main(x[:start]), self.synthetic(x[start:])])


def split_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer of `model` (in place) by a SplitBatchNorm holding it; returns model."""
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, SplitBatchNorm(child))
        else:
            split_batchnorm(child)
    return model


@contextlib.contextmanager
def synthetic_rows(model: nn.Module, start: int) -> Iterator[None]:
    """Within the block, the model's SplitBatchNorm layers treat rows from `start` on as synthetic."""
    layers = [module for module in model.modules() if isinstance(module, SplitBatchNorm)]
    for layer in layers:
        layer.start = start
    try:
        yield
    finally:
        for layer in layers:
            layer.start = None


def build_classifier(name: str, spec, num_outputs: int, width: float = 1.0, split_bn: bool = False,
                     kwargs: dict[str, Any] | None = None, dropout: float = 1.0) -> nn.Module:
    """The classifier `name` for the spec's image shape, with num_outputs logits (labeler.num_outputs(K)).

    name: a CLASSIFIERS key (sized by width, its dropout rates multiplied by `dropout`), torchvision:NAME or
    package.module:factory (called with kwargs, the config's classifier_kwargs; see external_classifier);
    split_bn: every BatchNorm gets a twin for synthetic rows (synthetic_bn: split).
    """
    kwargs = kwargs or {}
    if name in CLASSIFIERS:
        if kwargs:
            raise ConfigError(f"classifier_kwargs ({', '.join(kwargs)}) are a factory's arguments, but classifier="
                              f"{name!r} is built in; valid: no classifier_kwargs (classifier_width sizes it)")
        model = CLASSIFIERS[name](spec, num_outputs, width, dropout)
    elif is_import_path(name):
        model = external_classifier(name, spec, num_outputs, **kwargs)
    else:
        raise ConfigError(f"classifier={name!r} is not one of {', '.join(CLASSIFIERS)}; valid: those, or "
                          "torchvision:NAME or package.module:factory")
    if split_bn and not any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules()):
        raise ClassifierError("synthetic_bn", f"synthetic_bn='split' gives synthetic rows their own BatchNorm, but "
                              f"classifier={name!r} has no BatchNorm layer", "synthetic_bn: shared for this classifier")
    return split_batchnorm(model) if split_bn else model


# ----------------------------------------------------------------------------------------------
# Any PyTorch model: torchvision:NAME or package.module:factory.

class ClassifierError(ConfigError):
    """An external classifier cannot be imported, built or run. `key` is the config key at fault (classifier,
    classifier_kwargs.NAME or synthetic_bn); the message is "<problem>; valid: <what would be>"."""

    def __init__(self, key: str, problem: str, valid: str):
        super().__init__(f"{problem}; valid: {valid}")
        self.key, self.problem, self.valid = key, problem, valid

    def __reduce__(self):  # Ray pickles errors raised in trials: rebuild from the three parts
        return type(self), (self.key, self.problem, self.valid)


def external_classifier(name: str, spec, num_outputs: int, **kwargs: Any) -> nn.Module:
    """The nn.Module of torchvision:NAME (torchvision_classifier) or package.module:factory, with num_outputs logits.

    A factory is called with num_classes=num_outputs, in_channels=spec.channels and image_size (an int for square
    images, else (height, width)) when its signature names those parameters, and **kwargs (classifier_kwargs).
    Lazy layers (nn.LazyLinear, ...) are materialised by one forward pass of two blank images, so the optimizer
    sees every parameter.
    """
    module_name, _, attribute = name.partition(":")
    if module_name == "torchvision":
        model = torchvision_classifier(attribute, spec, num_outputs, **kwargs)
    else:
        factory = resolve_classifier(name)
        arguments = {"num_classes": num_outputs, "in_channels": spec.channels, "image_size": _image_size(spec)}
        model = _call_factory(name, factory, arguments, kwargs, optional=("in_channels", "image_size"))
    if any(isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params()
           for module in model.modules()):
        training = model.training
        _forward(name, model.eval(), spec, torch.contiguous_format)
        model.train(training)
    return model


def resolve_classifier(name: str) -> Callable[..., nn.Module]:
    """The factory a classifier value names: torchvision's builder for torchvision:NAME, else the attribute after
    the colon of the imported module. ClassifierError says what is missing."""
    module_name, _, attribute = name.partition(":")
    if module_name == "torchvision":
        from torchvision import models  # lazy: importing torchvision costs seconds in every fresh trial process

        names = models.list_models(module=models)
        if attribute not in names:
            raise ClassifierError("classifier", f"classifier={name!r} is not a torchvision classification model"
                                  f"{did_you_mean(attribute, names)}", "torchvision:NAME with NAME from "
                                  "torchvision.models.list_models(), e.g. torchvision:resnet18")
        return models.get_model_builder(attribute)
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        if isinstance(error, ModuleNotFoundError) and error.name and \
                (module_name == error.name or module_name.startswith(f"{error.name}.")):
            raise ClassifierError("classifier", f"classifier={name!r}: cannot import {module_name!r} ({error})",
                                  f"package.module:factory with the module importable from the working directory "
                                  f"or PYTHONPATH (python -c 'import {module_name}' works)") from error
        raise ClassifierError("classifier", f"classifier={name!r}: importing {module_name!r} raised "
                              f"{type(error).__name__}: {_first_line(error)}", "a module that imports cleanly") \
            from error
    factory: Any = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            names = [n for n in dir(factory) if not n.startswith("_")]
            where = getattr(module, "__file__", None) or module_name
            raise ClassifierError("classifier", f"classifier={name!r}: {where} has no attribute {attribute!r}"
                                  f"{did_you_mean(part, names)}",
                                  f"{module_name}:NAME with NAME a function or class of that module that returns an "
                                  "nn.Module")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ClassifierError("classifier", f"classifier={name!r} is a {type(factory).__name__}, not callable",
                              "a function or class that returns an nn.Module")
    return factory


def torchvision_classifier(name: str, spec, num_outputs: int, small_input: bool = True, **kwargs: Any) -> nn.Module:
    """torchvision.models' `name` with weights=None (nothing is downloaded) and num_outputs classes, for the spec's
    images; kwargs go to the builder (e.g. dropout for vgg11).

    small_input (classifier_kwargs.small_input, default true) and images <= SMALL_INPUT_PX a side: a ResNet (resnet*,
    resnext*, wide_resnet*) gets the CIFAR stem, a 3x3 stride-1 conv1 and no max-pool. Images with other than 3
    channels: the first convolution is replaced by one with the same settings for spec.channels inputs. vit_*
    builders get image_size = the image side (their position embedding depends on it).
    """
    from torchvision import models  # lazy, as in resolve_classifier

    full_name = f"torchvision:{name}"
    for key in ("weights", "progress"):
        if key in kwargs:
            raise ClassifierError(f"classifier_kwargs.{key}", f"classifier_kwargs.{key}: ganaug builds torchvision "
                                  "models untrained, with weights=None, and never downloads", f"remove {key}")
    if not isinstance(small_input, bool):
        raise ClassifierError("classifier_kwargs.small_input", f"classifier_kwargs.small_input={small_input!r} is "
                              "not a boolean", "true (CIFAR stem for small images) or false (the ImageNet stem)")
    arguments = {"weights": None, "num_classes": num_outputs}
    if name.startswith("vit_"):
        arguments["image_size"] = spec.height
    model = _call_factory(full_name, resolve_classifier(full_name), arguments, kwargs)
    if isinstance(model, models.ResNet) and small_input and max(spec.height, spec.width) <= SMALL_INPUT_PX:
        _replace_first_conv(model, spec.channels, kernel_size=3, stride=1, padding=1)
        model.maxpool = nn.Identity()
    elif spec.channels != 3:
        _replace_first_conv(model, spec.channels)
    return model


def check_classifier(name: str, spec, num_outputs: int, kwargs: dict[str, Any] | None = None,
                     split_bn: bool = False) -> None:
    """Build the classifier and run it in training mode on two blank images of the spec's shape, as contiguous and
    as channels_last tensors (what a CUDA run uses); ClassifierError says what is wrong, e.g. the output's shape
    is not [2, num_outputs]. For the search-space check before Ray starts (SearchSpec.check_classifier)."""
    model = build_classifier(name, spec, num_outputs, split_bn=split_bn, kwargs=kwargs).train()
    for memory_format in (torch.contiguous_format, torch.channels_last):
        output = _forward(name, model.to(memory_format=memory_format), spec, memory_format)
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
        if shape is None:
            raise ClassifierError("classifier", f"classifier={name!r} returns a {type(output).__name__}, not a tensor "
                                  "of logits, in training mode", "a model that returns one [batch, num_classes] "
                                  "tensor (auxiliary heads off, e.g. classifier_kwargs: {aux_logits: false})")
        if shape != (2, num_outputs):
            raise ClassifierError("classifier", f"classifier={name!r} returns a tensor of shape {shape} for a batch of "
                                  f"2 images, expected logits of shape (2, {num_outputs}): the factory got num_classes="
                                  f"{num_outputs}", "a model that returns [batch, num_classes] logits, with its last "
                                  "layer sized by the factory's num_classes argument")


def _call_factory(name: str, factory: Callable[..., Any], arguments: dict[str, Any], kwargs: dict[str, Any],
                  optional: tuple[str, ...] = ()) -> nn.Module:
    """factory(**arguments, **kwargs) as an nn.Module; `optional` arguments only where the signature names them."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # some C-implemented callables have no signature: call and see
        parameters = None
    if parameters is not None:
        any_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        arguments = {key: value for key, value in arguments.items() if key not in optional or key in parameters}
        for key in [*arguments, *kwargs]:
            if key not in parameters and not any_keyword:
                problem = f"classifier={name!r} takes no parameter {key!r}{did_you_mean(key, parameters)} " \
                          f"(its signature: {inspect.signature(factory)})"
                if key not in kwargs:  # num_classes
                    raise ClassifierError("classifier", problem, "a factory f(num_classes, ...) returning an nn.Module")
                accepted = ", ".join(p for p in parameters if p not in (*arguments, *optional)) or "none"
                raise ClassifierError(f"classifier_kwargs.{key}", problem, f"classifier_kwargs among its "
                                      f"parameters: {accepted}")
    else:
        arguments = {key: value for key, value in arguments.items() if key not in optional}
    try:
        model = factory(**arguments, **kwargs)
    except Exception as error:
        # "got an unexpected keyword argument 'depth'" from a **kwargs builder: the classifier_kwargs entry is at fault.
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(error))
        blame = f"classifier_kwargs.{unexpected.group(1)}" if unexpected and unexpected.group(1) in kwargs \
            else "classifier"
        called = ", ".join(f"{key}={value!r}" for key, value in {**arguments, **kwargs}.items())
        valid = f"only arguments that {name} accepts" if blame != "classifier" else \
            "a factory that returns an nn.Module for these arguments"
        raise ClassifierError(blame, f"classifier={name!r} raised {type(error).__name__}: {_first_line(error)} "
                              f"(called with {called})", valid) from error
    if not isinstance(model, nn.Module):
        raise ClassifierError("classifier", f"classifier={name!r} returned a {type(model).__name__}, not an "
                              "nn.Module", "a factory that returns a torch.nn.Module")
    return model


def _forward(name: str, model: nn.Module, spec, memory_format: torch.memory_format) -> Any:
    """model(two blank images), without gradients; ClassifierError names the classifier when it raises."""
    images = torch.zeros(2, spec.channels, spec.height, spec.width).to(memory_format=memory_format)
    try:
        with torch.no_grad():
            return model(images)
    except Exception as error:
        layout = " in channels_last memory (as on CUDA)" if memory_format is torch.channels_last else ""
        valid = "a model that takes [batch, channels, height, width] images in [-1, 1]" + (
            "; flatten with torch.flatten or .reshape, not .view" if layout else
            "; a factory with in_channels / image_size parameters adapts to the data")
        raise ClassifierError("classifier", f"classifier={name!r}: a forward pass of 2 images of {spec.channels}x"
                              f"{spec.height}x{spec.width}{layout} raised {type(error).__name__}: "
                              f"{_first_line(error)}", valid) from error


def _replace_first_conv(model: nn.Module, in_channels: int, **changes: Any) -> None:
    """Replace the model's first Conv2d (in registration order: the stem) by one for in_channels inputs, with the
    same settings except `changes` (kernel_size, stride, padding). A model without one is left as it is."""
    first = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        return
    name, conv = first
    groups = conv.groups if in_channels % conv.groups == 0 else 1
    settings = dict(kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                    groups=groups, bias=conv.bias is not None, padding_mode=conv.padding_mode)
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, nn.Conv2d(in_channels, conv.out_channels, **{**settings, **changes}))


def _image_size(spec) -> int | tuple[int, int]:
    return spec.height if spec.height == spec.width else (spec.height, spec.width)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


CLASSIFIERS = registry("classifier", {
    "mlp": mlp_classifier,
    "cnn": cnn_classifier,
    "resnet": resnet_classifier,
    "airbench": airbench_classifier,
})
# synthetic_bn -> whether build_classifier gives synthetic rows their own BatchNorm (split_bn: SplitBatchNorm).
SYNTHETIC_BN = registry("synthetic_bn", {"shared": False, "split": True})
