"""experiment.deterministic (ganaug.search.ordered): the same space and seed give the same trials, ASHA decisions and
summary.csv at max_concurrent 2, whatever order the trials finish in, and across a --resume."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import ray
from spaces import write_tiny_space
from test_recovery import lose_last_trial

from ganaug.search.ordered import OrderedASHA, horizon, make_ordered_searcher
from ganaug.search.tune import main
from ganaug.space.spec import load_space

# Two trials at a time (so trial k sees trials 0 .. k-3), GAN and no-GAN policies, one ASHA rung (epoch 1 of 2).
SEARCH = {"classifier_lr": {"loguniform": [1.0e-4, 3.0e-3]}, "synthetic_ratio": {"choice": [0.0, 0.5]}}
# What summary.csv must repeat: every searched key, how each trial ended and what it scored (not its id, folder, wall
# time, or which trial trained a generator the bank shares).
SAME = [*SEARCH, "status", "epochs", "best_val_acc", "last_val_acc", "test_acc", "synthetic_diversity"]


def write_space(tmp: Path, num_samples: int = 6) -> Path:
    return write_tiny_space(tmp, "ordered", experiment={"num_samples": num_samples, "deterministic": True},
                            data={"samples_per_class": 30}, search=SEARCH)


def outcome(experiment: Path) -> pd.DataFrame:
    """summary.csv's deterministic part, one row per policy."""
    summary = pd.read_csv(experiment / "summary.csv")[SAME]
    return summary.sort_values(list(SEARCH)).reset_index(drop=True)


@pytest.fixture(scope="module")
def local_ray():
    """One Ray for the module's three searches (each would start and stop its own: seconds each)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def search_once(tmp_path_factory, name: str) -> Path:
    tmp = tmp_path_factory.mktemp(name)
    assert main([str(write_space(tmp))]) == 0
    return tmp / "results" / "ordered"


@pytest.fixture(scope="module")
def first(tmp_path_factory, local_ray):
    return search_once(tmp_path_factory, "first")


@pytest.fixture(scope="module")
def second(tmp_path_factory, local_ray):
    return search_once(tmp_path_factory, "second")


def test_the_same_seed_gives_the_same_search(first, second):
    summary = outcome(first)
    assert len(summary) == 6 and (summary["status"] == "pruned").any(), summary
    pd.testing.assert_frame_equal(summary, outcome(second))


def test_a_resumed_search_ends_as_an_uninterrupted_one(first, second, capsys):
    """As a driver killed after Tune's last save leaves it: the newest trial ran (its folder, its journal trial) but
    Tune's saved trial list lacks it. The resumed search proposes it again, runs it again, and ends as `first`."""
    lose_last_trial(second, keep_folder=True)
    capsys.readouterr()
    assert main([str(second.parents[1] / "ordered.yaml"), "--resume"]) == 0
    assert "Resuming deterministically: 1 trial(s)" in capsys.readouterr().out
    assert len(list((second / "superseded").iterdir())) == 1
    pd.testing.assert_frame_equal(outcome(first), outcome(second))


def told(searcher, trial_id: str, epochs: int, value: float) -> None:
    """Tune's calls for a trial that reported `epochs` epochs of `value` and ended."""
    for epoch in range(1, epochs + 1):
        searcher.on_trial_result(trial_id, {"epoch": epoch, "val_acc": value, "diverged": 0})
    searcher.on_trial_complete(trial_id, {"epoch": epochs, "val_acc": value, "diverged": 0})


def test_trial_k_waits_for_trial_k_minus_3_and_sees_nothing_later(tmp_path, capsys):
    """Trial 3 is proposed once trial 0 has finished, from trial 0 only: trials 1 and 2 finishing first (and in
    either order) change neither when nor what."""
    spec = load_space(write_space(tmp_path, num_samples=8))
    assert horizon(spec.experiment.max_concurrent) == 3
    proposals = []
    for late in (False, True):
        searcher = make_ordered_searcher(spec, None)
        first_three = [searcher.suggest(f"t{k}") for k in range(3)]
        if late:  # trials 1 and 2 end before trial 0, in reverse order
            told(searcher, "t2", 2, 0.9)
            told(searcher, "t1", 1, 0.2)
        assert searcher.suggest("t3") is None
        told(searcher, "t0", 2, 0.7)
        proposals.append((first_three, searcher.suggest("t3")))
    assert "trial 3 waits for trial 0 (Tune trial t0) to finish" in capsys.readouterr().out
    assert proposals[0] == proposals[1] and proposals[0][0][0]["synthetic_ratio"] == 0.0  # the baseline first


def fake_tune(searcher, trials: list) -> SimpleNamespace:
    """What a scheduler sees of Tune's controller: its search algorithm (SearchGenerator(ConcurrencyLimiter(...))),
    its trials, and stop_trial (recording the trials stopped)."""
    stopped: list = []
    return SimpleNamespace(search_alg=SimpleNamespace(searcher=searcher), get_trials=lambda: trials,
                           stop_trial=stopped.append, stopped=stopped)


def test_asha_judges_trial_k_against_trials_0_to_k_minus_3_only(tmp_path):
    """Ray's rung rule (below the (1 - 1/rf) quantile of the rung's records stops), on trials 0 .. k-3's records."""
    searcher = make_ordered_searcher(load_space(write_space(tmp_path, num_samples=4)), None)
    asha = OrderedASHA(time_attr="epoch", max_t=4, grace_period=1, reduction_factor=2)
    asha.set_search_properties("val_acc", "max")
    trials = [SimpleNamespace(trial_id=f"t{k}", config=searcher.suggest(f"t{k}"), status="RUNNING") for k in range(3)]
    tune = fake_tune(searcher, trials)
    for trial in trials:
        asha.on_trial_add(tune, trial)
    told(searcher, "t0", 2, 0.6)  # rungs at epochs 1 and 2: 0.6 at both
    for low in ("t1", "t2"):  # lower than trial 3 at the rung, still running: trial 3 does not see them
        searcher.on_trial_result(low, {"epoch": 1, "val_acc": 0.1, "diverged": 0})
    trial = SimpleNamespace(trial_id="t3", config=searcher.suggest("t3"))
    asha.on_trial_add(tune, trial)
    decide = lambda epoch, value: asha.on_trial_result(tune, trial, {"epoch": epoch, "val_acc": value})  # noqa: E731
    assert decide(1, 0.5) == "STOP" and decide(1, 0.6) == "CONTINUE"
    assert decide(2, 0.55) == "STOP" and decide(3, 0.0) == "CONTINUE"  # no rung at epoch 3
    assert decide(4, 0.0) == "STOP"  # max_t


def test_a_trial_that_ends_while_the_next_proposal_waits_keeps_its_worker(tmp_path, capsys):
    """Tune keeps one idle worker process: a trial that ends while the slot it frees would wait stays in its last
    report (NOOP) until the next proposal can be made, so the next trial reuses its process."""
    searcher = make_ordered_searcher(load_space(write_space(tmp_path, num_samples=8)), None)
    asha = OrderedASHA(time_attr="epoch", max_t=2, grace_period=1, reduction_factor=2)
    asha.set_search_properties("val_acc", "max")
    trials = [SimpleNamespace(trial_id=f"t{k}", config=searcher.suggest(f"t{k}"), status="RUNNING") for k in range(3)]
    told(searcher, "t0", 2, 0.6)
    trials.append(SimpleNamespace(trial_id="t3", config=searcher.suggest("t3"), status="RUNNING"))
    tune = fake_tune(searcher, trials)
    # t3 ends; trial 4 would wait for t1, still running: t3 keeps its worker.
    assert asha.on_trial_result(tune, trials[3], {"epoch": 2, "val_acc": 0.7}) == "NOOP"
    assert "trial 4 waits for trial 1 (Tune trial t1) to finish" in capsys.readouterr().out
    assert asha.choose_trial_to_run(tune) is None and tune.stopped == []
    told(searcher, "t1", 2, 0.5)  # trial 4 can be proposed now: t3 is stopped, its worker free for trial 4
    asha.choose_trial_to_run(tune)
    assert tune.stopped == [trials[3]]
    # t2 ends while trial 4 can be proposed: it stops at once.
    assert asha.on_trial_result(tune, trials[2], {"epoch": 2, "val_acc": 0.7}) == "STOP"
