"""The search: the Ray Tune experiment (the only place a Tuner is built), its trainable, and the Optuna searcher
that reports ASHA-stopped trials as PRUNED.

    from ganaug.search import search
    from ganaug.space import load_space
    search(load_space("search_spaces/quickstart.yaml"))
"""

from ganaug.search.searchers import SEARCHERS, HonestOptunaSearch, make_searcher
from ganaug.search.tune import ExperimentError, build_tuner, main, search, train_trial

__all__ = ["ExperimentError", "HonestOptunaSearch", "SEARCHERS", "build_tuner", "main", "make_searcher", "search",
           "train_trial"]
