"""The search algorithm: Optuna proposes policies, through an OptunaSearch that tells the study the truth about
each finished trial (ASHA-stopped ones as PRUNED), and the study lives in a journal file next to the results."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from ray.tune.search.optuna import OptunaSearch

from ganaug.metrics import names
from ganaug.space import SearchSpec

# The product is "tpe". benchmarks/search_efficiency.py measures it against "random" (Optuna's RandomSampler) and
# "stock_tpe": Ray's own OptunaSearch, which tells Optuna an ASHA-stopped trial is COMPLETE with its early score.
SEARCHERS = ("tpe", "random", "stock_tpe")
# Result keys each finished Optuna trial carries as user_attrs (besides `status`, summary.csv's status).
USER_ATTRS = names("study")


class HonestOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna the truth about each finished trial.

    Ray's OptunaSearch marks a trial ASHA stopped early as COMPLETE with its early score, which
    biases TPE toward configurations that start fast. Here: COMPLETE only for trials that ran all
    epochs; PRUNED (with the intermediate values already reported per epoch) for early-stopped
    ones; FAIL for diverged or errored trials, so they never look like a result.
    """

    # The states of the journal trial an adopted Tune trial may take (_adopt).
    ADOPTABLE: tuple[optuna.trial.TrialState, ...] = (optuna.trial.TrialState.RUNNING,)

    def __init__(self, *args, max_epochs: int, **kwargs):
        super().__init__(*args, **kwargs)
        self._max_epochs = max_epochs
        self._last_results: dict[str, dict] = {}

    @property
    def _study(self) -> optuna.Study:
        """OptunaSearch's study, created in its setup. The cast: Ray's __init__ sets _ot_study = None unannotated, so
        mypy takes its type to be None."""
        return cast(optuna.Study, self._ot_study)

    def _told_already(self, trial_id: str) -> bool:
        """Whether the study already holds this trial as finished. After a driver crash the journal can be
        ahead of the searcher state Tune restores (saved every few seconds), and Tune then reruns a trial
        that Optuna has closed: its results must not be reported or told a second time."""
        if trial_id in self._completed_trials:
            return True
        ot_trial = self._ot_trials[trial_id]
        if ot_trial.storage.get_trial(ot_trial._trial_id).state.is_finished():
            self._completed_trials.add(trial_id)
            return True
        return False

    def _adopt(self, trial_id: str, result: dict | None) -> bool:
        """Whether this searcher has (now) an Optuna trial for Tune trial `trial_id`.

        The reverse of _told_already's case: Tune's restored trial list can hold a trial that the restored searcher
        state never suggested (on remote storage the two are uploaded file by file, and a driver killed between
        the uploads leaves the searcher's copy older; CI saw it; recovery.py makes the concurrency limiter hold such
        a trial, so its completion reaches here). The trial's params are its config, which every result carries:
        its Optuna trial is the journal's RUNNING trial with exactly those params that no other Tune trial holds,
        or, where the journal never heard of it, a new RUNNING trial with those params.
        """
        if trial_id in self._ot_trials:
            return True
        if not result:
            return False
        prefix = "config/"  # Tune hands searchers flattened results; suggest returned unflatten_dict(params)
        self._hold(trial_id, {key[len(prefix):]: value for key, value in result.items() if key.startswith(prefix)},
                   self.ADOPTABLE)
        return True

    def _hold(self, trial_id: str, params: dict, states: tuple) -> None:
        """Give Tune trial `trial_id` the journal's first trial in one of `states` with exactly `params` that no other
        Tune trial holds, or a new RUNNING trial with those params (_adopt)."""
        held = {ot_trial._trial_id for ot_trial in self._ot_trials.values()}
        candidates = self._study.get_trials(deepcopy=False, states=states)
        match = next((t._trial_id for t in candidates if t.params == params and t._trial_id not in held), None)
        if match is None:
            # The distributions the space draws these params from: the define-by-run function replayed on them.
            replay = optuna.trial.FixedTrial(params)
            cast(Callable[[Any], Any], self._space)(replay)  # a callable: make_searcher passes define_by_run
            template = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, params=params,
                                                 distributions=replay.distributions)
            match = self._study._storage.create_new_trial(self._study._study_id, template_trial=template)
        self._ot_trials[trial_id] = optuna.trial.Trial(self._study, match)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if result.get("diverged") or not self._adopt(trial_id, result) or self._told_already(trial_id):
            return
        self._last_results[trial_id] = result
        # GAN pretraining passes report with epoch 0 and the untrained classifier's score: Optuna's steps
        # are classifier epochs only, as ASHA's rungs are.
        if int(result.get("epoch", 0)) >= 1:
            self._ot_trials[trial_id].report(float(result[self.metric]), int(result["epoch"]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        result = result or self._last_results.get(trial_id)
        if not self._adopt(trial_id, result) or self._told_already(trial_id):
            return
        ot_trial = self._ot_trials[trial_id]
        states = optuna.trial.TrialState
        if error or not result or result.get("diverged") or self.metric not in result:
            self._set_user_attrs(ot_trial, result, "diverged" if result and result.get("diverged") else "error")
            self._study.tell(ot_trial, state=states.FAIL)
            self._completed_trials.add(trial_id)
            return
        # Tune hands the final result only to on_trial_complete: record it as an intermediate value too.
        epoch = int(result.get("epoch", 0))
        if epoch >= 1 and epoch not in ot_trial.storage.get_trial(ot_trial._trial_id).intermediate_values:
            ot_trial.report(float(result[self.metric]), epoch)
        if epoch < self._max_epochs:
            self._set_user_attrs(ot_trial, result, "pruned")
            self._study.tell(ot_trial, state=states.PRUNED)
        else:
            self._set_user_attrs(ot_trial, result, "complete")
            self._study.tell(ot_trial, float(result[self.metric]), state=states.COMPLETE)
        self._completed_trials.add(trial_id)
        self._last_results.pop(trial_id, None)

    @staticmethod
    def _set_user_attrs(ot_trial, result: dict | None, status: str) -> None:
        """Record summary.csv's view of the trial in the study, so the journal reads on its own."""
        ot_trial.set_user_attr("status", status)
        for key in USER_ATTRS:
            value = (result or {}).get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                ot_trial.set_user_attr(key, float(value) if key != "diverged" else int(value))


def make_searcher(space: SearchSpec, journal_path: str | None, searcher: str = "tpe") -> OptunaSearch:
    """The Tune search algorithm `searcher` (one of SEARCHERS) for `space`, its study kept in `journal_path` (None:
    in memory)."""
    sampler = make_sampler(space) if searcher != "random" else optuna.samplers.RandomSampler(seed=space.experiment.seed)
    kwargs = searcher_kwargs(space, journal_path, sampler)
    if searcher == "stock_tpe":
        return OptunaSearch(**kwargs)
    return HonestOptunaSearch(**kwargs, max_epochs=space.scheduler.max_epochs)


def searcher_kwargs(space: SearchSpec, journal_path: str | None, sampler: optuna.samplers.BaseSampler) -> dict:
    """OptunaSearch's arguments for `space`: its define-by-run space, metric, `sampler`, the study in `journal_path`
    (None: in memory) and the baselines to run first."""
    return dict(
        space=space.define_by_run, metric=space.metric.name, mode=space.metric.mode, sampler=sampler,
        storage=None if journal_path is None else _journal_storage(journal_path), study_name=space.experiment.name,
        # The no-GAN baselines run first (enqueued in the study), so the search always tunes them too.
        points_to_evaluate=space.baseline_points() or None,
    )


def make_sampler(space: SearchSpec, seed: int | None = None) -> optuna.samplers.TPESampler:
    """Optuna's TPESampler with the experiment's `sampler:` settings (docs/searcher.md), seeded with `seed` (None: the
    experiment's seed)."""
    settings = space.experiment.sampler
    startup = settings.n_startup_trials
    if startup is None:  # a quarter of the budget explores at random, but never fewer than 2 or more than 10
        startup = min(10, max(2, space.experiment.num_samples // 4))
    with warnings.catch_warnings():
        # multivariate and group are marked experimental in Optuna 5; the warning would print once per search.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=space.experiment.seed if seed is None else seed, n_startup_trials=startup,
            multivariate=settings.multivariate, group=settings.grouped(), constant_liar=settings.constant_liar)


def close_orphaned_trials(journal: Path, study_name: str) -> int:
    """Mark FAIL every Optuna trial still RUNNING once the search is over; returns how many.

    A driver killed mid-search leaves the Optuna trials of its running Tune trials open in the journal when
    Tune's saved searcher state is older than the journal; after --resume Tune reruns those trials, and the
    open ones would show as RUNNING forever (in optuna-dashboard, and to TPE as pending).
    """
    if not journal.is_file():
        return 0
    study = optuna.load_study(study_name=study_name, storage=_journal_storage(str(journal)))
    orphans = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for frozen in orphans:
        # The same attributes as every told trial (HonestOptunaSearch), so the journal reads on its own.
        trial = optuna.trial.Trial(study, frozen._trial_id)
        trial.set_user_attr("status", "error")
        trial.set_user_attr("orphaned", True)  # its Tune trial was rerun under another Optuna trial
        trial.set_user_attr("diverged", 0)  # killed with the driver, not by a non-finite loss
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return len(orphans)


def _journal_storage(path: str) -> JournalStorage:
    """The Optuna storage of a study kept in the journal file `path` (plain text, safe to copy to remote storage)."""
    return JournalStorage(JournalFileBackend(path))
