"""The search space: a YAML file -> a validated SearchSpec (a strict pydantic model per section, the checks between
keys, and the Optuna space Tune searches). Imports neither torch nor Ray: bad input is answered before either loads.

    from ganaug.space import load_space
    space = load_space("search_spaces/quickstart.yaml")
    space.trial_config({"synthetic_ratio": 0.5})   # one trial's TrialConfig
"""

from ganaug.space.dataset import check_data
from ganaug.space.schema import (
    METRICS,
    Dist,
    ExperimentSection,
    Metric,
    Resources,
    Sampler,
    Scheduler,
    SpaceError,
    search_order,
)
from ganaug.space.spec import BASELINE_AXES, SearchSpec, load_space
from ganaug.space.storage import validate_generators, validate_storage

__all__ = ["BASELINE_AXES", "Dist", "ExperimentSection", "METRICS", "Metric", "Resources", "Sampler", "Scheduler",
           "SearchSpec", "SpaceError", "check_data", "load_space", "search_order", "validate_generators",
           "validate_storage"]
