"""--resume after a driver killed between Tune's two state uploads: the search generator's saved count of created
trials is ahead of Tune's saved trial list (ganaug.search.recovery). Made deterministic here by editing a finished
search's state the way such a kill leaves it: the last trial gone from the list and its folder never written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import ray.cloudpickle as cloudpickle
from experiment_fixture import SPACE
from spaces import write_tiny_space

from ganaug.search.recovery import recover_lost_trials
from ganaug.search.tune import main

NUM_SAMPLES = 4  # experiment_fixture.SPACE


def newest(folder: Path, prefix: str) -> Path:
    return max(folder.glob(f"{prefix}*"))


def search_state(experiment: Path) -> dict:
    return cloudpickle.loads(newest(experiment, "search_gen_state-").read_bytes())


def lose_last_trial(experiment: Path, keep_folder: bool = False) -> str:
    """Drop the newest trial from Tune's saved trial list (and, unless keep_folder, its folder), leave the search
    generator's count as it was, and mark the trial live in the concurrency limiter; return the trial id."""
    state_file = newest(experiment, "experiment_state-")
    state = json.loads(state_file.read_text())
    trial_json, _ = state["trial_data"].pop()
    trial = json.loads(trial_json)
    state_file.write_text(json.dumps(state))
    if not keep_folder:
        shutil.rmtree(experiment / trial["relative_logdir"])
    search_file = newest(experiment, "search_gen_state-")
    search = cloudpickle.loads(search_file.read_bytes())
    search["name:ConcurrencyLimiter"]["live_trials"].add(trial["trial_id"])
    search_file.write_bytes(cloudpickle.dumps(search))
    return trial["trial_id"]


def test_resume_recreates_a_trial_lost_between_the_state_uploads(tmp_path, capsys):
    space = write_tiny_space(tmp_path, "lost", **SPACE)
    assert main([str(space), "--num-cpus", "2"]) == 0
    experiment = tmp_path / "results" / "lost"
    assert recover_lost_trials(str(experiment)) == 0  # a consistent state is left alone
    lose_last_trial(experiment, keep_folder=True)  # it reported, summary.csv has it: not lost
    assert recover_lost_trials(str(experiment)) == 0
    assert search_state(experiment)["counter"] == NUM_SAMPLES

    lost = lose_last_trial(experiment)  # the next trial: gone with its folder
    assert recover_lost_trials(str(experiment)) == 1
    state = search_state(experiment)
    assert state["counter"] == NUM_SAMPLES - 1 and not state["finished"]
    assert lost not in state["name:ConcurrencyLimiter"]["live_trials"]  # its slot is free again
    assert recover_lost_trials(str(experiment)) == 0  # repaired once: nothing more to do

    lost_too = lose_last_trial(experiment)  # once more, now through --resume itself
    capsys.readouterr()
    assert main([str(space), "--resume", "--num-cpus", "2"]) == 0
    assert "Resuming: 1 trial(s)" in capsys.readouterr().out
    summary = pd.read_csv(experiment / "summary.csv", dtype={"trial_id": str})
    assert len(summary) == NUM_SAMPLES  # num_samples honoured: the lost trials were replaced by new ones
    assert not {lost, lost_too} & set(summary["trial_id"])
    assert set(summary["status"]) <= {"complete", "pruned"}


def test_resume_holds_a_trial_the_search_state_never_counted(tmp_path, capsys):
    """The reverse kill: the trial list saved after a trial started, the search generator's state before. The trial
    is counted (no extra trial is created) and the limiter holds it, so its rerun's completion reaches the study."""
    space = write_tiny_space(tmp_path, "unseen", **SPACE)
    assert main([str(space), "--num-cpus", "2"]) == 0
    experiment = tmp_path / "results" / "unseen"
    state_file = newest(experiment, "experiment_state-")
    state = json.loads(state_file.read_text())
    trial_json, metadata = state["trial_data"][-1]
    trial = json.loads(trial_json)
    trial["status"] = "RUNNING"  # the list as saved while it ran
    state["trial_data"][-1] = [json.dumps(trial), metadata]
    state_file.write_text(json.dumps(state))
    search_file = newest(experiment, "search_gen_state-")
    search = cloudpickle.loads(search_file.read_bytes())
    search["counter"] -= 1  # the search state as saved before the trial was created
    search["name:ConcurrencyLimiter"]["live_trials"].discard(trial["trial_id"])
    search_file.write_bytes(cloudpickle.dumps(search))

    assert recover_lost_trials(str(experiment)) == 0  # nothing lost
    repaired = search_state(experiment)
    assert repaired["counter"] == NUM_SAMPLES
    assert repaired["name:ConcurrencyLimiter"]["live_trials"] == {trial["trial_id"]}
    assert repaired["name:ConcurrencyLimiter"]["num_unfinished_live_trials"] == 1
    saved = newest(experiment, "search_gen_state-").read_bytes()
    assert recover_lost_trials(str(experiment)) == 0  # repaired once: left alone after
    assert newest(experiment, "search_gen_state-").read_bytes() == saved

    capsys.readouterr()
    assert main([str(space), "--resume", "--num-cpus", "2"]) == 0
    summary = pd.read_csv(experiment / "summary.csv", dtype={"trial_id": str})
    assert len(summary) == NUM_SAMPLES and trial["trial_id"] in set(summary["trial_id"])  # not one trial more
    assert set(summary["status"]) <= {"complete", "pruned"}
