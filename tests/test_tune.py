"""A real small search end to end: OptunaSearch + ASHA under Ray Tune, its outputs, resume and bad input."""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from spaces import write_tiny_space

from ganaug.config import TrialConfig
from ganaug.results.experiment import gan_versus_baseline, load_experiment
from ganaug.search.searchers import make_searcher
from ganaug.search.tune import JOURNAL_FILE, main
from ganaug.space.schema import SpaceError
from ganaug.space.spec import load_space

ROOT = Path(__file__).resolve().parents[1]


def write_space(tmp: Path, name: str = "tiny", num_samples: int = 8) -> Path:
    """The tiny quickstart at 4 epochs, with a GAN pretraining pass and CAS, searching three keys."""
    return write_tiny_space(
        tmp, name, experiment={"num_samples": num_samples}, scheduler={"max_epochs": 4},
        fixed={"batch_size": 128, "gan_pretrain_epochs": 1, "sample_every": 2, "cas_epochs": 1},
        search={"synthetic_ratio": {"choice": [0.25, 0.5]}, "labeling": {"choice": ["pseudo", "lsro", "all_in_one"]},
                "classifier_lr": {"loguniform": [1.0e-5, 3.0e-3]}})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One real search of 8 trials, run once for the tests of this module."""
    tmp = tmp_path_factory.mktemp("search")
    space = write_space(tmp)
    assert main([str(space), "--num-cpus", "2"]) == 0
    return tmp / "results" / "tiny"


def test_the_search_ends_with_the_best_gan_and_no_gan_policies(finished):
    summary = pd.read_csv(finished / "summary.csv", dtype={"trial_id": str})
    best = summary[summary["status"] == "complete"].iloc[0]
    line = gan_versus_baseline(load_experiment(finished))
    # Every trial of this space uses synthetic data: there is no baseline to name.
    assert line.startswith(f"Validation: best GAN policy {best['trial_id']} (val_acc={best['last_val_acc']:.4f}); "
                           "no no-GAN trial finished. On the test split")


def test_trials_ran_and_asha_stopped_some(finished):
    summary = pd.read_csv(finished / "summary.csv")
    assert len(summary) == 8
    assert set(summary["status"]) <= {"complete", "pruned", "diverged", "error"}
    assert (summary["status"] == "pruned").sum() >= 2, summary[["status", "epochs"]]
    assert (summary["status"] == "complete").sum() >= 1
    assert (summary.loc[summary["status"] == "pruned", "epochs"] < 4).all()
    assert (summary.loc[summary["status"] == "complete", "epochs"] == 4).all()
    for column in ("synthetic_ratio", "labeling", "classifier_lr", "best_val_acc", "last_val_acc",
                   "wall_seconds", "epochs", "status"):
        assert column in summary
    complete = summary[summary["status"] == "complete"]
    assert (complete["last_val_acc"] > 0.1).all()  # above chance on 10 classes
    # Every trial trains a GAN here: its quality figures reach the summary (cas_ratio at the last epoch only).
    assert summary["synthetic_diversity"].between(0.05, 5).all(), summary["synthetic_diversity"]
    assert (summary["frechet_distance"] > 0).all()
    assert complete["cas_ratio"].between(0, 2).all() and complete["cas_ratio"].notna().all()


def test_trial_processes_are_reused_and_each_trial_keeps_its_own_files(finished):
    """experiment.reuse_actors (default): later trials run in earlier trials' processes, in their own folders."""
    summary = pd.read_csv(finished / "summary.csv")
    pids, reused = set(), 0
    for row in summary.itertuples():
        results = [json.loads(line) for line in (Path(row.path) / "result.json").read_text().splitlines()]
        pids |= {r["pid"] for r in results}
        own = [json.loads(line) for line in (Path(row.path) / "metrics.jsonl").read_text().splitlines()]
        # One GAN pretraining pass (epoch 0), then the classifier epochs the trial ran; a trial whose generator
        # an earlier trial left in the bank (same GAN keys and seed) skips the pass and says so on every row.
        if own[0].get("generator_reused") == 1:
            assert [r["epoch"] for r in own] == list(range(1, row.epochs + 1)), row.path
            assert all(r["gan_pretrain_seconds"] == 0 for r in own)
            reused += 1
        else:
            assert [r["epoch"] for r in own] == list(range(0, row.epochs + 1)), row.path
            assert own[0]["gan_pretrain_epoch"] == 1 and "gan_pretrain_epoch" not in own[1]
        assert own[-1]["val_acc"] == pytest.approx(results[-1]["val_acc"])
    assert len(pids) < len(summary), pids
    assert 0 < reused < len(summary)  # the first trial of each generator trains it, the others load it


def test_best_policy_holds_the_full_config_and_metrics(finished):
    policy = yaml.safe_load((finished / "best_policy.yaml").read_text())
    summary = pd.read_csv(finished / "summary.csv")
    complete = summary[summary["status"] == "complete"]
    assert policy["status"] == "complete"
    assert policy["metrics"]["val_acc"] == pytest.approx(complete["last_val_acc"].max())
    cfg = TrialConfig.from_dict(policy["config"])
    assert cfg.epochs == 4 and cfg.classifier_width == 0.25
    assert policy["data"]["name"] == "digits"
    assert policy["reproduce"].startswith("python -m ganaug.pipeline ")
    assert Path(policy["checkpoint"]).is_dir()
    assert "test_acc" in policy["metrics"]


def test_optuna_journal_has_pruned_trials_and_no_early_complete(finished):
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(finished / JOURNAL_FILE)))
    study = optuna.load_study(study_name="tiny", storage=storage)
    states = [t.state for t in study.trials]
    assert len(study.trials) == 8
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and all(t.intermediate_values for t in pruned)
    assert all(max(t.intermediate_values) < 4 for t in pruned)
    for trial in study.trials:
        assert min(trial.intermediate_values, default=1) >= 1  # GAN pretraining (epoch 0) is not a step
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert max(trial.intermediate_values) == 4  # only full-length trials are COMPLETE
    assert optuna.trial.TrialState.RUNNING not in states


def test_optuna_sees_classifier_epochs_only(tmp_path):
    """GAN pretraining reports epoch 0 with the untrained classifier's score: never an Optuna step."""
    searcher = make_searcher(load_space(write_space(tmp_path)), None)
    pretraining = {"epoch": 0, "gan_pretrain_epoch": 1, "val_acc": 0.1, "diverged": 0}
    for trial_id in ("started", "stopped_in_pretraining"):
        searcher.suggest(trial_id)
        searcher.on_trial_result(trial_id, pretraining)
    searcher.on_trial_result("started", {"epoch": 1, "val_acc": 0.6, "diverged": 0})
    searcher.on_trial_complete("started", {"epoch": 1, "val_acc": 0.6, "diverged": 0})
    searcher.on_trial_complete("stopped_in_pretraining", None)
    started, stopped = searcher._ot_study.trials
    assert started.intermediate_values == {1: 0.6}
    assert stopped.intermediate_values == {} and stopped.state == optuna.trial.TrialState.PRUNED


def test_stock_searcher_calls_an_asha_stopped_trial_complete_and_ours_pruned(tmp_path):
    """The difference benchmarks/search_efficiency.py measures: the same early stop, told two ways."""
    spec = load_space(write_space(tmp_path))
    told = {}
    for searcher_name in ("tpe", "stock_tpe"):
        searcher = make_searcher(spec, None, searcher_name)
        searcher.set_search_properties("val_acc", "max", {})
        searcher.suggest("stopped")
        searcher.on_trial_result("stopped", {"epoch": 1, "training_iteration": 1, "val_acc": 0.4, "diverged": 0})
        searcher.on_trial_complete("stopped", {"epoch": 1, "training_iteration": 1, "val_acc": 0.4, "diverged": 0})
        (trial,) = searcher._ot_study.trials
        told[searcher_name] = trial.state
    # TPE ranks COMPLETE trials by value, ahead of every PRUNED one (those by the last epoch they reached).
    assert told == {"tpe": optuna.trial.TrialState.PRUNED, "stock_tpe": optuna.trial.TrialState.COMPLETE}


def test_sampler_settings_reach_optuna_and_a_bad_combination_is_refused(tmp_path):
    path = write_space(tmp_path)
    assert make_searcher(load_space(path), None)._sampler._group is True  # the default: multivariate, grouped
    sampler = "  sampler: {n_startup_trials: 3, multivariate: false}\n"
    text = path.read_text().replace("  max_failures: 1\n", "  max_failures: 1\n" + sampler)
    path.write_text(text)
    sampler = make_searcher(load_space(path), None)._sampler
    assert (sampler._n_startup_trials, sampler._multivariate, sampler._group) == (3, False, False)
    path.write_text(text.replace("multivariate: false", "multivariate: false, group: true"))
    with pytest.raises(SpaceError, match=r"experiment\.sampler\.group: true needs multivariate: true"):
        load_space(path)


def test_a_rerun_of_a_trial_the_journal_already_closed_is_not_told_twice(tmp_path):
    """After a driver crash the journal can be ahead of the searcher state Tune restores; Tune then reruns a
    trial Optuna has finished, whose results must not reach the study again (Optuna would raise)."""
    searcher = make_searcher(load_space(write_space(tmp_path)), None)
    searcher.suggest("rerun")
    closed = searcher._ot_study.trials[0]
    searcher._ot_study.tell(closed.number, 0.7, state=optuna.trial.TrialState.COMPLETE)  # before the crash
    searcher.on_trial_result("rerun", {"epoch": 4, "val_acc": 0.6, "diverged": 0})
    searcher.on_trial_complete("rerun", {"epoch": 4, "val_acc": 0.6, "diverged": 0})
    assert searcher._ot_study.trials[0].value == 0.7


def test_a_restored_trial_the_searcher_never_suggested_is_adopted_and_told(tmp_path):
    """On remote storage Tune's restored trials can be newer than its restored searcher state: the rerun trial's
    results reach a searcher that never suggested it (recovery.py has the limiter pass them on). Its Optuna trial
    is the journal's RUNNING one with its params, or a new one where the journal lacks it."""
    from ray.tune.utils.util import flatten_dict

    spec = load_space(write_space(tmp_path))
    searcher = make_searcher(spec, str(tmp_path / "study.journal"))
    searcher.suggest("known")
    lost_config = searcher.suggest("lost")
    del searcher._ot_trials["lost"]  # the searcher state saved before "lost" was suggested
    final = flatten_dict({"config": lost_config, "epoch": 4, "val_acc": 0.6, "diverged": 0})  # as Tune hands it
    searcher.on_trial_result("lost", final)
    searcher.on_trial_complete("lost", final)
    states = optuna.trial.TrialState
    known, lost = searcher._ot_study.trials
    assert (lost.state, lost.value, lost.user_attrs["status"]) == (states.COMPLETE, 0.6, "complete")
    assert known.state == states.RUNNING and lost.params == flatten_dict(lost_config)

    # A journal that never heard of the trial (uploaded before it was asked): a new trial, with its params.
    fresh = make_searcher(spec, None)
    fresh.on_trial_result("lost", final)
    fresh.on_trial_complete("lost", final)
    (adopted,) = fresh._ot_study.trials
    assert adopted.params == lost.params and adopted.distributions == lost.distributions
    assert (adopted.state, adopted.value) == (states.COMPLETE, 0.6)


def test_results_score_classifier_epochs_and_keep_every_pretraining_row(tmp_path):
    meta = {"name": "x", "metric": {"name": "val_acc", "mode": "max"}, "max_epochs": 2,
            "base_config": TrialConfig().to_dict(), "data": {"name": "digits"}}
    (tmp_path / "ganaug_experiment.yaml").write_text(yaml.safe_dump(meta))
    folder = tmp_path / "train_trial_a_1"
    folder.mkdir()
    (folder / "params.json").write_text("{}")
    # An (artificially) high epoch-0 score must not count; result.json lost pass 2 and epoch 2, which the
    # trial's own metrics.jsonl still holds.
    records = [{"epoch": 0, "gan_pretrain_epoch": 1, "val_acc": 0.9, "trial_id": "a"},
               {"epoch": 0, "gan_pretrain_epoch": 2, "val_acc": 0.9, "trial_id": "a"},
               {"epoch": 1, "val_acc": 0.4, "gan_pretrain_seconds": 1.0, "trial_id": "a"},
               {"epoch": 2, "val_acc": 0.5, "gan_pretrain_seconds": 1.0}]
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in (records[0], records[2])))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    experiment = load_experiment(tmp_path)
    assert list(experiment.curves["epoch"]) == [0, 0, 1, 2]
    assert list(experiment.curves["gan_pretrain_epoch"].fillna(0)) == [1, 2, 0, 0]
    trial = experiment.trials.iloc[0]
    assert (trial["status"], trial["epochs"]) == ("complete", 2)
    assert (trial["best_val_acc"], trial["last_val_acc"]) == (0.5, 0.5)


def test_tensorboard_holds_val_acc_and_a_sample_grid(finished):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = pd.read_csv(finished / "summary.csv", keep_default_na=False, na_values=[""])

    def tags(trial_dir: Path) -> tuple[set, set]:
        scalars, images = set(), set()
        for events in trial_dir.glob("events.out.tfevents.*"):
            accumulator = EventAccumulator(str(events), size_guidance={"images": 0, "scalars": 0})
            accumulator.Reload()
            scalars |= set(accumulator.Tags()["scalars"])
            images |= set(accumulator.Tags()["images"])
        return scalars, images

    complete = Path(summary.query("status == 'complete'")["path"].iloc[0])
    scalars, images = tags(complete)
    assert any(tag.endswith("val_acc") for tag in scalars), scalars
    assert "samples" in images and any(tag.endswith("synthetic_diversity") for tag in scalars), (images, scalars)
    assert "samples_epoch0004.png" in {p.name for p in (complete / "samples").glob("*.png")}
    # The trial that trained the bank's generator shows its pretraining grids under their own tag, by pass.
    trained = Path(summary.query("generator_reused == 0")["path"].iloc[0])
    assert "samples_pretrain" in tags(trained)[1]
    assert "samples_pretrain0001.png" in {p.name for p in (trained / "samples").glob("*.png")}
    assert summary["generator_key"].nunique() == 1 and (summary["generator_reused"] == 1).any()


def test_reproduce_command_reruns_the_best_policy(finished, tmp_path):
    from ganaug.trial.command import main as pipeline_main

    assert pipeline_main([str(finished / "best_policy.yaml"), "--epochs", "1", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["epoch"] == 1 and 0 <= record["val_acc"] <= 1


def _finished_trials(experiment: Path) -> set[str]:
    done = set()
    for result in experiment.glob("*/result.json"):
        lines = result.read_text().splitlines()
        if lines and json.loads(lines[-1]).get("epoch") == 4:
            done.add(result.parent.name)
    return done


def test_driver_killed_then_resume_finishes_without_losing_trials(tmp_path):
    space = write_space(tmp_path, name="killed", num_samples=6)
    experiment = tmp_path / "results" / "killed"
    command = [sys.executable, "-m", "ganaug.tune", str(space), "--num-cpus", "2"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.time() + 240
        while not _finished_trials(experiment) and time.time() < deadline:
            time.sleep(0.5)
        before = _finished_trials(experiment)
        assert before, "no trial finished before the kill"
        time.sleep(2)  # let Tune write its experiment state once more
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the driver and the local Ray it started
        process.wait()
    assert main([str(space), "--resume", "--num-cpus", "2"]) == 0
    summary = pd.read_csv(experiment / "summary.csv")
    assert len(summary) == 6  # num_samples honoured across the crash
    assert before <= _finished_trials(experiment)  # no finished trial lost
    for name in before:
        assert list((experiment / name).glob("checkpoint_*")), f"{name} lost its checkpoint"
    assert set(summary["status"]) <= {"complete", "pruned"}
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(experiment / JOURNAL_FILE)))
    study = optuna.load_study(study_name="killed", storage=storage)
    assert len([t for t in study.trials if t.state.is_finished()]) >= 6


def _set(section: str, key: str, value):
    """An edit of the tiny space: section.key = value (the search section's key for a distribution)."""
    return lambda space: space[section].update({key: value})


@pytest.mark.parametrize("edit, message", [
    (lambda space: space["experiment"].update(num_sample=space["experiment"].pop("num_samples")),
     "did you mean 'num_samples'"),
    (_set("search", "synthetic_ratio", {"choice": [0.25, -1.0]}), "synthetic_ratio"),
    (_set("search", "classifier_lr", {"loguniform": [3.0e-3, 1.0e-5]}), "classifier_lr"),
    (lambda space: space["experiment"]["resources"].update(gpu=0.3), "gpu"),
    (_set("scheduler", "grace_period", 9), "grace_period"),
    (_set("fixed", "gan_arch", "biggan"), "biggan"),
    (_set("data", "name", "imagenet"), "imagenet"),
    ("  foo: [\n", "yaml"),  # appended to the file: not YAML any more
])
def test_bad_input_exits_2_with_one_message_before_ray(tmp_path, capsys, edit, message):
    space = write_space(tmp_path, name="bad")
    if callable(edit):
        document = yaml.safe_load(space.read_text())
        edit(document)
        space.write_text(yaml.safe_dump(document, sort_keys=False))
    else:
        space.write_text(space.read_text() + edit)
    assert main([str(space)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "Traceback" not in error
    assert message.lower() in error.lower()
    assert not (tmp_path / "results").exists()  # nothing written


def test_resume_without_an_experiment_and_rerun_into_an_existing_one(tmp_path, capsys, finished):
    space = write_space(tmp_path, name="nothing")
    assert main([str(space), "--resume"]) == 2
    assert "no experiment to resume" in capsys.readouterr().err
    space = write_space(finished.parent.parent, name="tiny")
    assert main([str(space)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_unwritable_storage_exits_2(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")  # no one, not even root, can create a folder under a file
    space = write_tiny_space(tmp_path, "x", storage=blocker / "sub")
    assert main([str(space)]) == 2
    assert str(blocker) in capsys.readouterr().err


def _set_tune_status(experiment: Path, states: dict[str, str]) -> None:
    """Rewrite Tune's newest experiment state as if Tune had recorded `states` (trial_id -> TERMINATED, ERROR...)."""
    state_file = max(experiment.glob("experiment_state-*.json"))
    state = json.loads(state_file.read_text())
    for entry in state["trial_data"]:  # [trial state as JSON text, run metadata as JSON text]
        trial = json.loads(entry[0])
        trial["status"] = states.get(trial["trial_id"], trial["status"])
        entry[0] = json.dumps(trial)
    state_file.write_text(json.dumps(state))


def test_trial_status_comes_from_tunes_records_and_outputs_count_it(finished, tmp_path, capsys):
    """Tune's experiment state says which trials errored (or are unfinished); error.txt decides only without it."""
    from types import SimpleNamespace

    from ganaug.results.experiment import write_outputs

    experiment = Path(shutil.copytree(finished, tmp_path / "tiny"))
    before = load_experiment(experiment).trials.set_index("trial_id")
    assert set(before["status"]) <= {"complete", "pruned"}
    # Two pruned trials become errored / unfinished in Tune's record (ASHA prunes at least two here, see
    # test_trials_ran_and_asha_stopped_some); a complete trial would stay complete, as it ran every epoch.
    errored, unfinished = before.index[before["status"] == "pruned"][:2]
    rest = before.index.drop([errored, unfinished])
    recovered = next((trial for trial in rest if before.loc[trial, "status"] == "pruned"), rest[0])
    _set_tune_status(experiment, {errored: "ERROR", unfinished: "RUNNING"})
    # A failure logged after the trial's last report: the error.txt fallback would call it an error, but Tune
    # retried it and recorded TERMINATED, so its record wins.
    Path(before.loc[recovered, "path"], "error.txt").write_text(
        "Failure # 1 (occurred at 2099-01-01_00-00-00)\nThe actor died unexpectedly.\n")

    import ray

    after = load_experiment(experiment).trials.set_index("trial_id")["status"]
    assert not ray.is_initialized()  # Tune's records are read as files
    assert (after[errored], after[unfinished]) == ("error", "running")
    assert after[recovered] == before.loc[recovered, "status"]
    others = before.index.drop([errored, recovered, unfinished])
    assert (after[others] == before.loc[others, "status"]).all()

    summary = write_outputs(SimpleNamespace(experiment_dir=lambda: str(experiment)))
    assert summary.set_index("trial_id").loc[errored, "status"] == "error"
    assert "1 error, 1 running" in capsys.readouterr().out

    for state_file in experiment.glob("experiment_state-*.json"):  # a folder without Tune's records
        state_file.unlink()
    fallback = load_experiment(experiment).trials.set_index("trial_id")["status"]
    assert (fallback[errored], fallback[unfinished]) == ("pruned", "pruned")
    # The regex fallback calls the retried trial an error (a complete one stays complete: it ran every epoch).
    assert fallback[recovered] == ("error" if before.loc[recovered, "status"] == "pruned" else "complete")


def test_next_steps_name_the_experiment_folder(tmp_path):
    from ganaug.results.experiment import next_steps

    experiment = tmp_path / "my results" / "tiny"
    experiment.mkdir(parents=True)
    quoted = shlex.quote(str(experiment))
    block = next_steps(experiment, experiment / JOURNAL_FILE)
    commands = [line.strip() for line in block.splitlines()[1:] if not line.strip().startswith("#")]
    assert commands == [
        f"tensorboard --logdir {quoted}",
        f"ganaug evaluate {quoted}",
        f"papermill analysis/pick_best_policy.ipynb {shlex.quote(str(experiment / 'pick_best_policy.ipynb'))} "
        f"-p RESULTS {quoted}",
    ]  # no journal file yet (remote storage keeps none): no dashboard line
    (experiment / JOURNAL_FILE).touch()
    assert block.splitlines()[0] == "Next steps:"
    assert next_steps(experiment, experiment / JOURNAL_FILE).splitlines()[-1] == (
        f"  optuna-dashboard {shlex.quote(str(experiment / JOURNAL_FILE))}")
    # The notebook's parameter is RESULTS: papermill's -p must name it.
    notebook = json.loads((ROOT / "analysis" / "pick_best_policy.ipynb").read_text())
    parameters = next(cell for cell in notebook["cells"] if "parameters" in cell["metadata"].get("tags", []))
    assert "RESULTS = " in "".join(parameters["source"])


def test_orphaned_optuna_trials_are_closed_once_the_search_is_over(tmp_path):
    """A driver killed mid-search can leave Optuna trials RUNNING in the journal that the resumed search reran
    under new trials: once the search is over they are FAIL, never pending forever."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from ganaug.search.searchers import close_orphaned_trials

    journal = tmp_path / JOURNAL_FILE
    study = optuna.create_study(study_name="tiny", storage=JournalStorage(JournalFileBackend(str(journal))))
    done = study.ask()
    study.tell(done, 0.5)
    study.ask()  # never told: its driver died
    assert close_orphaned_trials(journal, "tiny") == 1
    states = [trial.state for trial in optuna.load_study(
        study_name="tiny", storage=JournalStorage(JournalFileBackend(str(journal)))).trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    orphan = optuna.load_study(study_name="tiny", storage=JournalStorage(JournalFileBackend(str(journal)))).trials[1]
    assert orphan.user_attrs == {"status": "error", "orphaned": True, "diverged": 0}
    assert close_orphaned_trials(tmp_path / "missing.journal", "tiny") == 0


def test_asha_never_stops_a_baseline_run_first_but_counts_it_at_the_rung():
    """scheduler.full_baselines (the default): a no-GAN baseline point below the rung's cutoff trains on, where any
    other trial with its value would stop; its value still counts at the rung for the trials after it."""
    from types import SimpleNamespace

    from ganaug.search.schedulers import FullBaselinesASHA, is_baseline

    baseline = {"synthetic_ratio": 0, "traditional_aug": "none"}
    scheduler = FullBaselinesASHA(time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3, metric="val_acc",
                                  mode="max", baselines=[baseline])
    configs = [{"synthetic_ratio": ratio, "traditional_aug": "none"} for ratio in (0.5, 1.0, 0.0, 0.25)]
    trials = [SimpleNamespace(trial_id=f"t{i}", config=config) for i, config in enumerate(configs)]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    decisions = [scheduler.on_trial_result(None, trial, {"epoch": 1, "val_acc": value})
                 for trial, value in zip(trials, [0.9, 0.8, 0.1, 0.1])]
    assert decisions == ["CONTINUE", "STOP", "CONTINUE", "STOP"]  # the baseline (0.1) goes on; the GAN trial stops
    assert is_baseline({"traditional_aug": "none", "synthetic_ratio": 0.0}, [baseline])  # 0 and 0.0 alike
    assert not is_baseline({"synthetic_ratio": 0, "traditional_aug": "none", "mix": "none"}, [baseline])
    from ganaug.space import load_space

    quickstart = load_space(Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml")
    assert quickstart.scheduler.full_baselines and len(quickstart.baseline_points()) == 6 + 3  # and the twins
