"""What a search space asks of its dataset, checked once the data is loaded and before Ray starts: every cutout it can
draw fits the images, every gan_conditions names attribute columns the data has, every import-path classifier builds
on its shape, and every synthetic source it can draw is usable (its folders read and attached to the data). Each
failure is one SpaceError line naming the file and the key.

    data = check_data(space, load_data(space.data))
"""

from __future__ import annotations

from typing import Any

from ganaug.config import KWARGS_PREFIX, TrialConfig, is_import_path
from ganaug.data import check_attribute_columns, check_cutout
from ganaug.space.schema import SpaceError, as_list
from ganaug.space.spec import SearchSpec


def check_data(space: SearchSpec, data: Any) -> Any:
    """Every check below, and `data` with the images of the space's synthetic folders among its sources."""
    data = with_sources(space, data)
    check_image_size(space, data.spec.height, data.spec.width)
    check_classifier(space, data.spec)
    check_conditions(space, data.spec)
    return data


def check_image_size(space: SearchSpec, height: int, width: int) -> None:
    """Every value of a key whose valid range depends on the dataset's images (cutout) that the space can draw
    fits them, checked once the data is loaded, before Ray starts."""
    where = f"{space.path}: {'fixed' if 'cutout' in space.fixed else 'search'}.cutout"
    for value in space.reachable("cutout"):  # integers: load_space checked each through TrialConfig
        check_cutout(int(value), height, width, where=where, error=SpaceError)

def check_conditions(space: SearchSpec, data_spec) -> None:
    """Every gan_conditions value the space can draw names attribute columns the dataset has (attributes.csv),
    checked once the data is loaded, before Ray starts."""
    available = tuple(getattr(data_spec, "attribute_names", ()))
    where = f"{space.path}: {'fixed' if 'gan_conditions' in space.fixed else 'search'}.gan_conditions"
    for value in space.reachable("gan_conditions"):
        conditions = ",".join(map(str, value)) if isinstance(value, list) else value or ""
        check_attribute_columns(conditions, available, where=where, error=SpaceError)

def check_classifier(space: SearchSpec, data_spec) -> None:
    """Build every torchvision:/import-path classifier the space can draw and run it on two blank images of the
    dataset's shape (ganaug.classifier.check_classifier), before Ray starts; SpaceError names the key.

    Once with each searched classifier_kwargs entry at its first value (a range: its low end) and once more per
    other value (a range: its high end), for each number of outputs the labelings need (all_in_one: K + 1),
    with split BatchNorm where synthetic_bn can be split. Built-in classifiers need no check.
    """
    from ganaug.classifier import LABELERS, ClassifierError, check_classifier  # lazy: both import torch

    num_classes = data_spec.num_classes
    outputs = sorted({LABELERS[labeling].num_outputs(num_classes) for labeling in space.reachable("labeling")})
    split_bn = "split" in space.reachable("synthetic_bn")
    fixed = TrialConfig.from_dict(space.fixed, combinations=False).classifier_kwargs
    for name in filter(is_import_path, space.reachable("classifier")):
        # The searched entries a trial with this classifier draws (a `when` on classifier may exclude some).
        searched = {key[len(KWARGS_PREFIX):]: dist.values for key, dist in space.search.items() if
                    key.startswith(KWARGS_PREFIX) and name in as_list((dist.when or {}).get("classifier", name))}
        first = {**fixed, **{argument: values[0] for argument, values in searched.items()}}
        variants = [(None, first)] + [(f"{KWARGS_PREFIX}{argument}", {**first, argument: value})
                                      for argument, values in searched.items() for value in values[1:]]
        for varied, kwargs in variants:
            for num_outputs in outputs:
                try:
                    check_classifier(name, data_spec, num_outputs, kwargs, split_bn=split_bn)
                except ClassifierError as error:
                    # A build that only fails for another value of a searched entry: that entry is at fault.
                    key = varied if varied is not None and error.key == "classifier" else error.key
                    context = f" ({num_classes} classes + 1 for labeling all_in_one)" \
                        if num_outputs != num_classes else ""
                    debug = " (--debug shows its traceback)" if error.__cause__ is not None else ""
                    raise SpaceError(f"{space.path}: {space.place(key, name)}: {error.problem}{context}{debug}; "
                                     f"valid: {error.valid}") from error

def with_sources(space: SearchSpec, data):
    """`data` with the images of every synthetic_folder the space can draw (ganaug.data.attach_folders: read and
    checked against the dataset's size, channels and classes), once every synthetic source it can draw is known
    to be usable: the held-out real pool (data.real_pool) for `real`, and each package.module:factory built and
    asked for one image of two classes. Before Ray starts; SpaceError names the key."""
    import torch  # lazy, as the two below: `import ganaug.space` loads no torch

    from ganaug.data import DataError, attach_folders  # lazy: it imports torch
    from ganaug.trial import SourceError, build_imported, check_images  # lazy: it imports torch

    if not draws_synthetic(space):
        return data
    sources = space.reachable("synthetic_source")
    place = lambda key: f"{space.path}: {'fixed' if key in space.fixed else 'search'}.{key}"
    if "real" in sources and "real" not in data.sources:
        raise SpaceError(f"{place('synthetic_source')}: 'real' draws held-out real images, but the data section "
                         "holds none; valid: data.real_pool: {per_class: N}, or another source")
    for path in filter(is_import_path, sources):
        try:
            labels = torch.arange(2) % data.spec.num_classes
            check_images(torch.as_tensor(build_imported(path, data.spec).sample(labels, torch.Generator()))
                         .float(), 2, data.spec, f"synthetic_source={path!r}")
        except SourceError as error:
            raise SpaceError(f"{place('synthetic_source')}: {error}") from None
    folders = [path for path in space.reachable("synthetic_folder") if path] if "folder" in sources else []
    try:
        return attach_folders(data, folders)
    except DataError as error:
        raise SpaceError(f"{place('synthetic_folder')}: {error}") from None

def draws_synthetic(space: SearchSpec) -> bool:
    """Whether a trial of this space can add synthetic images (synthetic_ratio above 0 in reach)."""
    return any(float(value) > 0 for value in space.reachable("synthetic_ratio"))
