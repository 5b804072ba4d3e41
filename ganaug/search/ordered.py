"""The deterministic search (`experiment.deterministic: true`): the same space, seed and code give the same trials, the
same ASHA decisions and the same summary.csv at a given max_concurrent, whatever order the trials finish in.

Trials are numbered in the order they are proposed (their Optuna trial number). Trial k is proposed from trials
0 .. k - horizon (`horizon`: 2 * max_concurrent - 1), and ASHA judges it at each rung against those same trials
only. They have all finished before k is proposed (k waits for them, and the progress output says so), so neither
TPE nor ASHA ever sees a result whose arrival depends on timing. Ray's OptunaSearch and ASHA see results in
completion order instead (ray-project/ray#13616).

    experiment:
      deterministic: true   # docs/searcher.md: what is deterministic, on what hardware, at what cost
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection
from typing import Any, cast

import numpy as np
import optuna
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler
from ray.tune.utils.util import unflatten_dict

from ganaug.search.schedulers import is_baseline
from ganaug.search.searchers import HonestOptunaSearch, make_sampler, searcher_kwargs
from ganaug.space import SearchSpec

__all__ = ["OrderedASHA", "OrderedOptunaSearch", "horizon", "make_ordered_searcher"]

RUNNING = optuna.trial.TrialState.RUNNING


def horizon(max_concurrent: int) -> int:
    """How far back trial k looks: its proposal and its rung decisions see trials 0 .. k - horizon. At one trial at a
    time that is every earlier trial, as in any sequential search; at more, the trials k - horizon + 1 .. k - 1 count
    as still running (the constant liar's view), so that a slot rarely waits for one slow trial (docs/searcher.md)."""
    return 2 * max_concurrent - 1


class OrderedOptunaSearch(HonestOptunaSearch):
    """HonestOptunaSearch whose proposals and rung values depend on trial numbers only, never on timing.

    Trial k waits until trials 0 .. k - horizon have finished; it is then drawn by a TPESampler seeded with (seed, k)
    from a copy of the study that holds those trials with their results and trials k - horizon + 1 .. k - 1 as
    RUNNING. The journal's study is told each result live, as HonestOptunaSearch tells it; only the copy is sampled.

    After --resume, a proposal the stopped driver made that no Tune trial holds any more (Tune's saved state is older
    than the journal, which is written at once) is made again: the journal's trial goes to the next Tune trial that
    asks, and a trial that finished already is not told twice (_told_already).
    """

    # A Tune trial that Tune restored but this searcher's saved state never proposed takes the journal's trial with its
    # params, whatever its state: after a kill the journal is ahead of Tune's saved state (HonestOptunaSearch._adopt).
    ADOPTABLE = tuple(optuna.trial.TrialState)

    def __init__(self, *args, spec: SearchSpec, horizon: int, **kwargs):
        super().__init__(*args, **kwargs)
        self._spec, self._horizon = spec, horizon
        self._baselines = spec.baseline_points()
        self._tune_trials: set[str] = set()  # the Tune trials Tune added since the start (OrderedASHA.on_trial_add)
        self._restored = False  # restored by --resume, proposals of trials Tune lost not yet freed
        self._announced = -1  # the last trial number whose wait was printed

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self._restored, self._tune_trials = True, set()

    def on_trial_added(self, trial_id: str, params: dict) -> None:
        """Tune added trial `trial_id` with `params` (a new one, or one --resume restored); OrderedASHA passes it on."""
        self._tune_trials.add(trial_id)
        if trial_id not in self._ot_trials:
            self._hold(trial_id, params, states=self.ADOPTABLE)

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id in self._ot_trials:
            return super().suggest(trial_id)
        self._free_lost_proposals()
        trials = self._study.get_trials(deepcopy=False)
        number = self._next_number(trials)
        awaited = self._awaited(trials, number)
        if awaited is not None:
            self.say_waits(number, awaited)
            return None
        proposal = trials[number] if number < len(trials) else self._propose(trials)
        self._ot_trials[trial_id] = optuna.trial.Trial(self._study, proposal._trial_id)
        return unflatten_dict(proposal.params)

    def next_waits(self, ended: Collection[str] = ()) -> tuple[int, optuna.trial.FrozenTrial] | None:
        """The number of the next proposal and the lower-numbered trial it would wait for, with the Tune trials
        `ended` counted as finished (OrderedASHA keeps such trials' workers until it need not); None: no wait."""
        trials = self._study.get_trials(deepcopy=False)
        number = self._next_number(trials)
        done = {self._ot_trials[trial_id]._trial_id for trial_id in ended if trial_id in self._ot_trials}
        awaited = self._awaited(trials, number, done) if number < self._spec.experiment.num_samples else None
        return None if awaited is None else (number, awaited)

    def rung_values(self, trial_id: str, milestone: float) -> list[float]:
        """ASHA's record at `milestone` of each of trials 0 .. k - horizon (k: Tune trial `trial_id`'s number) that got
        there: its metric at its first classifier epoch >= milestone."""
        number = self._ot_trials[trial_id].number
        values = []
        for trial in self._study.get_trials(deepcopy=False)[:max(0, number - self._horizon + 1)]:
            reached = [epoch for epoch in trial.intermediate_values if epoch >= milestone]
            if reached:
                values.append(trial.intermediate_values[min(reached)])
        return values

    def _next_number(self, trials: list[optuna.trial.FrozenTrial]) -> int:
        """The number of the next proposal: the first journal trial no Tune trial holds (one the stopped driver made,
        after --resume), else a new one."""
        held = {ot_trial._trial_id for ot_trial in self._ot_trials.values()}
        return next((trial.number for trial in trials if trial._trial_id not in held), len(trials))

    def _awaited(self, trials: list[optuna.trial.FrozenTrial], number: int,
                 done: Collection[int] = ()) -> optuna.trial.FrozenTrial | None:
        """The first of trials 0 .. number - horizon that has not finished (nor is among the journal ids `done`), if
        any: what proposal `number` waits for."""
        return next((trial for trial in trials[:max(0, number - self._horizon + 1)]
                     if not trial.state.is_finished() and trial._trial_id not in done), None)

    def _propose(self, trials: list[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial:
        """Draw trial k = len(trials) and record it in the journal as RUNNING."""
        number = len(trials)
        told = max(0, number - self._horizon + 1)
        seed = int(np.random.SeedSequence([self._spec.experiment.seed, number]).generate_state(1)[0])
        with _quiet_optuna():
            view = optuna.create_study(direction=self._study.direction, sampler=make_sampler(self._spec, seed))
            view.add_trials(trials[:told])
            view.add_trials(optuna.trial.create_trial(state=RUNNING, params=trial.params,
                                                      distributions=trial.distributions) for trial in trials[told:])
            if number < len(self._baselines):  # the no-GAN baselines come first (searchers.searcher_kwargs)
                view.enqueue_trial(self._baselines[number])
            drawn = view.ask()
            self._suggest_from_define_by_run_func(cast(Callable[[Any], Any], self._space), drawn)
        template = optuna.trial.create_trial(state=RUNNING, params=drawn.params, distributions=drawn.distributions)
        storage = self._study._storage
        return storage.get_trial(storage.create_new_trial(self._study._study_id, template_trial=template))

    def _free_lost_proposals(self) -> None:
        """Once after --resume: a proposal held by a Tune trial that Tune no longer has (its saved trial list is older
        than this searcher's saved state: recovery.py) is free again, to be handed to the next trial that asks."""
        if not (self._restored and self._tune_trials):  # nothing restored, or no OrderedASHA told us Tune's trials
            return
        for trial_id in set(self._ot_trials) - self._tune_trials:
            del self._ot_trials[trial_id]
            self._completed_trials.discard(trial_id)
        self._restored = False

    def say_waits(self, number: int, awaited: optuna.trial.FrozenTrial) -> None:
        """Print once per trial number that a free slot waits for a lower-numbered trial to finish."""
        if number > self._announced:
            self._announced = number
            tune_id = next((tid for tid, ot_trial in self._ot_trials.items()
                            if ot_trial._trial_id == awaited._trial_id), "?")
            print(f"[ganaug] deterministic: trial {number} waits for trial {awaited.number} (Tune trial {tune_id}) to "
                  f"finish before it is proposed", flush=True)


class OrderedASHA(AsyncHyperBandScheduler):
    """Ray's ASHA (one bracket, its rungs and its cutoff) deciding trial k at a rung against trials 0 .. k - horizon
    only, as the study holds them (OrderedOptunaSearch.rung_values): they finished before k was proposed, so no
    decision waits, and none depends on which trial reached the rung first. Needs an OrderedOptunaSearch.

    A trial that ends while the next proposal must wait keeps its worker until the proposal can be made: Tune keeps
    one idle worker process at most, so a second trial ending meanwhile would lose its own, and the next trial would
    start a new process (~4 s of imports) instead of reusing it (experiment.reuse_actors).
    """

    def __init__(self, *, time_attr: str, max_t: int, grace_period: int, reduction_factor: float,
                 baselines: Collection[dict] = ()):
        super().__init__(time_attr=time_attr, max_t=max_t, grace_period=grace_period,
                         reduction_factor=reduction_factor)
        self.baselines = list(baselines)  # never stopped at a rung (schedulers.is_baseline)
        rungs = int(np.log(max_t / grace_period) / np.log(reduction_factor) + 1)  # as Ray's _Bracket counts them
        self._milestones = [grace_period * reduction_factor ** k for k in range(rungs)]
        self._kept: dict[str, Trial] = {}  # trials that ended and keep their workers, by Tune trial id
        self._pending: set[str] = set()  # the trials PENDING at the last step

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        ordered_searcher(tune_controller).on_trial_added(trial.trial_id, trial.config)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        decision = self._decide(tune_controller, trial, result)
        self._kept.pop(trial.trial_id, None)  # reports again: it was retried from a checkpoint
        if decision != TrialScheduler.STOP:
            return decision
        searcher = ordered_searcher(tune_controller)
        waits = searcher.next_waits({*self._kept, trial.trial_id})
        if waits is None:
            return decision
        searcher.say_waits(*waits)
        self._kept[trial.trial_id] = trial  # NOOP: it stays in its last report (stopped in choose_trial_to_run)
        return TrialScheduler.NOOP

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        # Called once a step: stop one kept trial once the next proposal need not wait and every new trial has its
        # worker (else Tune would stop this one's), or once a trial waits for a worker (it takes this one's).
        pending = {trial.trial_id for trial in tune_controller.get_trials() if trial.status == Trial.PENDING}
        if self._kept and (pending & self._pending or not (pending or
                                                            ordered_searcher(tune_controller).next_waits(self._kept))):
            tune_controller.stop_trial(self._kept.pop(next(iter(self._kept))))
        self._pending = pending
        return super().choose_trial_to_run(tune_controller)

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        pass  # nothing to record: the study holds every trial's rung values

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        pass

    def _decide(self, tune_controller, trial: Trial, result: dict) -> str:
        """Ray's decision on `result`, against trials 0 .. k - horizon."""
        if self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        epoch = result[self._time_attr]
        if epoch >= self._max_t:
            return TrialScheduler.STOP
        # Every classifier epoch reports, so a rung's record is the first epoch at or past its milestone.
        milestone = next((m for m in self._milestones if int(np.ceil(m)) == epoch), None)
        if milestone is None:
            return TrialScheduler.CONTINUE
        sign = 1.0 if self._mode == "max" else -1.0  # Ray's _metric_op: ASHA keeps the larger values
        values = [sign * value for value in ordered_searcher(tune_controller).rung_values(trial.trial_id, milestone)]
        if values and sign * result[self._metric] < np.nanpercentile(values, 100 * (1 - 1 / self._reduction_factor)) \
                and not is_baseline(trial.config, self.baselines):
            self._num_stopped += 1
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE


def ordered_searcher(tune_controller) -> OrderedOptunaSearch:
    """The OrderedOptunaSearch inside the experiment's search algorithm (Tune's SearchGenerator, the limiter)."""
    searcher = tune_controller.search_alg
    while not isinstance(searcher, OrderedOptunaSearch):
        searcher = getattr(searcher, "searcher", None)
        if searcher is None:
            raise RuntimeError("OrderedASHA needs an OrderedOptunaSearch (ganaug.search.ordered.make_ordered_searcher)")
    return searcher


def make_ordered_searcher(space: SearchSpec, journal_path: str | None) -> OrderedOptunaSearch:
    """The deterministic searcher for `space` (to be limited to experiment.max_concurrent), its study kept in
    `journal_path` (None: in memory)."""
    # The baselines are proposed in the study's copy (_propose), so the journal enqueues none.
    kwargs = {**searcher_kwargs(space, journal_path, make_sampler(space)), "points_to_evaluate": None}
    return OrderedOptunaSearch(**kwargs, max_epochs=space.scheduler.max_epochs, spec=space,
                               horizon=horizon(space.experiment.max_concurrent))


@contextlib.contextmanager
def _quiet_optuna():
    """Optuna's INFO lines ("A new study created in memory ...") left out while the study's copy is built."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)
