"""Faults a search survives: killed trial workers, a lost node, a killed driver with a truncated checkpoint, a
diverged policy, failed writes; and the two benchmarks that measure it (benchmarks/chaos.py, memory.py).

Faults come from outside the product, as they would in life: SIGKILL to the process Tune recorded for a trial
(the `pid` of its result.json), `Cluster.remove_node` on the node that runs it, SIGKILL to the driver and
every process it started, a checkpoint file cut short on disk. Each test then reads what the search left
behind (result.json, metrics.jsonl, summary.csv, the Optuna journal) to check that nothing was lost and
nothing restarted from zero. The searches are small (digits, quarter-width MLPs, 2 to 6 epochs) but real.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from spaces import write_tiny_space

from ganaug.search.tune import JOURNAL_FILE

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------
# Helpers: a small search space, and what a search left on disk.

def write_space(folder: Path, name: str, *, num_samples: int, max_failures: int, epochs: int,
                grace_period: int | None = None, search: dict | None = None,
                data: dict | None = None) -> Path:
    """The tiny quickstart (tests/spaces.py) on all of digits (~1150 training images) with a GAN: about a second
    an epoch on one core, slow enough for a fault to land mid-trial; a checkpoint every epoch."""
    return write_tiny_space(
        folder, name, search=search,
        experiment={"num_samples": num_samples, "max_failures": max_failures}, data=data or {},
        # grace_period = max_epochs turns ASHA off: every trial should run all its epochs.
        scheduler={"max_epochs": epochs, "grace_period": grace_period or epochs},
        fixed={"synthetic_ratio": 0.5, "sample_every": 100})


def reports(trial: Path) -> list[dict]:
    """Every result Tune recorded for a trial, in order (a line cut short by a crash is skipped)."""
    records = []
    file = trial / "result.json"
    for line in (file.read_text().splitlines() if file.is_file() else []):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def trial_folders(experiment: Path) -> dict[str, Path]:
    """trial_id -> trial folder."""
    folders = sorted(path for path in experiment.glob("train_trial_*") if path.is_dir())
    return {path.name.split("_")[2]: path for path in folders}


def epochs_of(records: list[dict], pid: int) -> list[int]:
    """The epochs that one process (a retry is a new process, a new pid) of a trial reported, in order.

    Read it for a retry: Tune rewrites result.json from its last synced copy when it restarts a trial, which
    can drop the last results of the process that died (results.py fills them in from metrics.jsonl)."""
    return [record["epoch"] for record in records if record["pid"] == pid]


def assert_no_epoch_lost_or_redone_twice(trial: Path, epochs: int) -> None:
    """The trial's own log (metrics.jsonl: a retry restored from a checkpoint continues the log that
    checkpoint carries) starts at epoch 1 once: no retry began from scratch. It never skips an epoch, and
    the curve results.py reads holds every epoch once.

    Only for single-node searches: on other nodes metrics.jsonl stays on the node (see test_cluster.py)."""
    from ganaug.results.experiment import read_curve

    run = [json.loads(line)["epoch"] for line in (trial / "metrics.jsonl").read_text().splitlines()]
    assert run == list(range(1, len(run) + 1)), f"epochs logged: {run}"
    assert list(read_curve(trial)["epoch"]) == list(range(1, epochs + 1))


def journal_states(experiment: Path, name: str) -> list[str]:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(experiment / JOURNAL_FILE)))
    return [t.state.name for t in optuna.load_study(study_name=name, storage=storage).trials]


def is_trial_worker(pid: int) -> bool:
    """Whether pid is (still) a Ray worker process, so a kill never hits an unrelated process."""
    try:
        return b"ray::" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (read from /proc: Ray workers leave their parent's process group)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def crash(process: subprocess.Popen) -> None:
    """SIGKILL a driver and everything it started at once, as a power cut would; return when all are gone."""
    victims = [process.pid, *descendants(process.pid)]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(pid) for pid in victims):
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def live_folder(experiment: Path) -> Path:
    """Where this process's Tune driver writes the experiment's result.json files first.

    Tune logs results into a staging folder in Ray's session folder and copies it to the storage folder
    every few checkpoints, so the storage copy can be epochs behind; a fault meant to land mid-trial is timed
    from the staging copy when this process runs the driver.
    """
    import ray

    node = ray._private.worker._global_node if ray.is_initialized() else None
    if node is None:
        return experiment
    staged = sorted(Path(node.get_session_dir_path()).glob(f"artifacts/*/{experiment.name}/driver_artifacts"))
    return staged[-1] if staged else experiment


def watch(experiment: Path, act: Callable[[dict[str, list[dict]]], bool], stop: threading.Event,
          errors: list, timeout: float = 400) -> threading.Thread:
    """Call act({trial_id: reports}) every 0.1 s, from a thread, until it returns True or stop is set."""
    def loop() -> None:
        deadline = time.monotonic() + timeout
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                folders = trial_folders(live_folder(experiment))
                seen = {trial: reports(folder) for trial, folder in folders.items()}
                if act({trial: records for trial, records in seen.items() if records}):
                    return
                time.sleep(0.1)
        except Exception as error:  # surfaced by the test, which cannot see a thread's exception
            errors.append(error)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


# ----------------------------------------------------------------------------------------------
# 1. Trial faults: a killed worker resumes from its checkpoint; past max_failures the trial errors alone.

@pytest.mark.slow
def test_killed_trials_resume_from_their_checkpoint_or_error_past_max_failures(tmp_path):
    """max_failures 1: the first trial killed is retried from its checkpoint and finishes all its epochs; the
    second is killed again once its retry has reported, one failure too many, so it ends `error` while the
    third trial and the search carry on."""
    from ganaug.search.tune import main

    epochs = 6
    space = write_space(tmp_path, "killed", num_samples=3, max_failures=1, epochs=epochs)
    experiment = tmp_path / "results" / "killed"
    killed: dict[str, list[int]] = {}  # trial -> pids killed, in order; the first trial killed is retried
    killed_at: dict[str, int] = {}  # trial -> the last epoch it had reported (with a checkpoint) when killed

    def act(seen: dict[str, list[dict]]) -> bool:
        for trial, records in seen.items():
            last = records[-1]
            pid = last["pid"]
            if pid in killed.get(trial, []) or not last.get("checkpoint_dir_name"):
                continue
            if not is_trial_worker(pid):
                continue
            # Kill early, so that each retry still has epochs to run and report (and to be killed in), but
            # not at epoch 1: if Tune has not registered that epoch's checkpoint when the worker dies, the
            # retry falls back to the one before, and at epoch 1 there is none (the retry starts afresh).
            early = 2 <= last["epoch"] <= 3
            first_victim = not killed and early
            second_victim = len(killed) == 1 and trial not in killed and early
            retried_second = len(killed) == 2 and list(killed)[1] == trial and last["epoch"] <= epochs - 2
            if first_victim or second_victim or retried_second:
                os.kill(pid, signal.SIGKILL)
                killed.setdefault(trial, []).append(pid)
                killed_at.setdefault(trial, last["epoch"])
        return sum(map(len, killed.values())) == 3

    stop, errors = threading.Event(), []
    thread = watch(experiment, act, stop, errors)
    try:
        assert main([str(space), "--num-cpus", "2"]) == 0
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    # The first kill always lands (it waits for a checkpoint); whether the second trial's retry is still
    # running when the watcher sees it depends on the machine's speed, so the outcome is checked either way.
    counts = [len(pids) for pids in killed.values()]
    assert counts and counts[0] == 1, f"the first kill did not land: {killed}"
    resumed = next(iter(killed))
    failed = next((trial for trial, pids in killed.items() if len(pids) == 2), None)

    summary = pd.read_csv(experiment / "summary.csv", dtype={"trial_id": str}).set_index("trial_id")
    assert len(summary) == 3
    survivors = summary.drop(index=failed) if failed else summary
    assert (survivors["status"] == "complete").all(), summary["status"]
    assert (survivors["epochs"] == epochs).all()
    if failed is None:  # the second kill plan did not land in time: every trial recovered
        assert_no_epoch_lost_or_redone_twice(trial_folders(experiment)[resumed], epochs)
        return
    assert summary.loc[failed, "status"] == "error"

    # The retry continued from the checkpoint of the last epoch reported before the kill (or of the one
    # before, if Tune had not registered that checkpoint yet: the retry then starts at that epoch), never
    # from epoch 1, and ran to the end.
    folder = trial_folders(experiment)[resumed]
    records = reports(folder)
    assert len({r["pid"] for r in records} - set(killed[resumed])) == 1  # one retry
    retry = epochs_of(records, records[-1]["pid"])
    assert retry[0] >= max(2, killed_at[resumed]), (killed_at, retry)
    assert retry == list(range(retry[0], epochs + 1))
    assert_no_epoch_lost_or_redone_twice(folder, epochs)

    folder = trial_folders(experiment)[failed]
    retry = epochs_of(reports(folder), killed[failed][1])  # retried once, from its checkpoint; killed again
    assert retry and retry[0] >= 2 and retry[-1] < epochs, retry
    assert_no_epoch_lost_or_redone_twice(folder, summary.loc[failed, "epochs"])
    assert (folder / "error.txt").is_file()

    assert sorted(journal_states(experiment, "killed")) == ["COMPLETE", "COMPLETE", "FAIL"]
    best = yaml.safe_load((experiment / "best_policy.yaml").read_text())
    assert best["trial_id"] != failed


# ----------------------------------------------------------------------------------------------
# 1b. A worker node removed mid-search: its trial resumes on another node from its checkpoint.

@pytest.fixture
def cluster():
    """Head (no CPU, like cluster.yaml's) + three 1-CPU worker nodes, each with its own temp folder."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    base = Path(tempfile.mkdtemp(prefix="ganaug-rel-", dir="/tmp"))  # short: Ray's socket paths must fit
    nodes = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "temp_dir": str(base / "head")})
    workers = {f"worker{i}": nodes.add_node(num_cpus=1, temp_dir=str(base / f"worker{i}")) for i in (1, 2, 3)}
    nodes.wait_for_nodes()
    ray.init(address=nodes.address)
    try:
        yield nodes, workers, base
    finally:
        ray.shutdown()
        nodes.shutdown()
        shutil.rmtree(base, ignore_errors=True)


def node_of(pid: int, base: Path) -> str | None:
    """The worker node whose temp folder holds the log of process `pid` (Ray names worker logs by pid)."""
    for log in base.glob(f"worker*/session_*/logs/python-core-worker-*_{pid}.log"):
        return log.relative_to(base).parts[0]
    return None


@pytest.mark.slow
def test_trial_on_a_removed_node_resumes_on_another_node(cluster, tmp_path):
    from ganaug.search.tune import main

    nodes, workers, base = cluster
    epochs = 6
    space = write_space(tmp_path, "node_lost", num_samples=2, max_failures=2, epochs=epochs)
    experiment = tmp_path / "results" / "node_lost"
    removed: dict[str, tuple[str, int]] = {}  # trial -> (node, last epoch reported when it was removed)

    def act(seen: dict[str, list[dict]]) -> bool:
        for trial, records in seen.items():
            last = records[-1]
            node = node_of(last["pid"], base)
            if last.get("checkpoint_dir_name") and last["epoch"] <= epochs - 3 and node:
                nodes.remove_node(workers[node], allow_graceful=False)  # the machine is gone, no goodbye
                removed[trial] = node, last["epoch"]
                return True
        return False

    stop, errors = threading.Event(), []
    thread = watch(experiment, act, stop, errors)
    try:
        assert main([str(space)]) == 0
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    [(trial, (lost_node, last_epoch))] = removed.items()

    summary = pd.read_csv(experiment / "summary.csv", dtype={"trial_id": str})
    assert list(summary["status"]) == ["complete", "complete"]
    assert (summary["epochs"] == epochs).all()
    folder = trial_folders(experiment)[trial]
    records = reports(folder)
    retry = epochs_of(records, records[-1]["pid"])
    assert len({r["pid"] for r in records}) >= 2 and retry[0] >= max(2, last_epoch), (last_epoch, retry)
    assert retry == list(range(retry[0], epochs + 1))
    new_node = node_of(records[-1]["pid"], base)
    assert new_node is not None and new_node != lost_node


# ----------------------------------------------------------------------------------------------
# 1c. A diverged trial is recorded once, as diverged: never retried, never best.

@pytest.mark.slow
def test_diverged_trial_is_recorded_once_never_retried_never_best(tmp_path):
    from ray.tune import ExperimentAnalysis

    from ganaug.search.tune import main

    # A learning rate of 1e30 overflows the first epoch's loss (1e6 does not: Adam's steps stay finite).
    # Optuna's seeded start-up draws give the two trials one value each. max_failures 2: retries are allowed,
    # so a diverged trial that Tune did retry would show.
    space = write_space(tmp_path, "diverged", num_samples=2, max_failures=2, epochs=2,
                        data={"samples_per_class": 30},
                        search={"classifier_lr": {"choice": [1.0e-3, 1.0e30]}})
    experiment = tmp_path / "results" / "diverged"
    assert main([str(space), "--num-cpus", "2"]) == 0

    summary = pd.read_csv(experiment / "summary.csv", dtype={"trial_id": str})
    assert len(summary) == 2 and summary["trial_id"].is_unique
    diverged = summary[summary["classifier_lr"] > 1]
    assert len(diverged) >= 1 and (summary["classifier_lr"] < 1).any(), summary
    assert (diverged["status"] == "diverged").all()
    assert (summary[summary["classifier_lr"] < 1]["status"] == "complete").all()
    for trial in diverged["trial_id"]:
        records = reports(trial_folders(experiment)[trial])
        assert len(records) == 1 and records[0]["diverged"] == 1 and records[0]["epoch"] == 1  # ran once
    failures = {t.trial_id: t.run_metadata.num_failures for t in ExperimentAnalysis(str(experiment)).trials}
    assert set(failures.values()) == {0}, failures  # returned normally: nothing for Tune to retry
    assert sorted(journal_states(experiment, "diverged")).count("FAIL") == len(diverged)
    best = yaml.safe_load((experiment / "best_policy.yaml").read_text())
    assert best["trial_id"] not in set(diverged["trial_id"]) and best["config"]["classifier_lr"] < 1


# ----------------------------------------------------------------------------------------------
# 2 + 3. Driver killed; the newest checkpoint of a running trial truncated; resume; ASHA still prunes.

@pytest.mark.slow
def test_resume_after_driver_kill_falls_back_past_a_truncated_checkpoint_and_asha_still_prunes(tmp_path):
    from ray.tune import ExperimentAnalysis

    from ganaug.trial.state import CHECKPOINT_FILE, CheckpointError, load_checkpoint

    epochs = 4
    space = write_space(tmp_path, "crashed", num_samples=6, max_failures=1, epochs=epochs, grace_period=1,
                        search={"classifier_lr": {"loguniform": [1.0e-5, 3.0e-3]}})
    experiment = tmp_path / "results" / "crashed"
    command = [sys.executable, "-m", "ganaug.tune", str(space), "--num-cpus", "2"]
    env = {**os.environ, "RAY_ADDRESS": ""}
    driver = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # Kill the driver while some trial is between its second checkpoint and its last epoch.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any(
                records and 2 <= records[-1]["epoch"] < epochs
                for records in map(reports, trial_folders(experiment).values())):
            assert driver.poll() is None, "the search ended before it could be interrupted"
            time.sleep(0.1)
    finally:
        crash(driver)  # the driver, the local Ray it started and the trials' workers

    # Truncate the checkpoint Tune will restore (its experiment state names it) of an unfinished trial.
    candidates = [t for t in ExperimentAnalysis(str(experiment)).trials
                  if t.status != "TERMINATED" and t.checkpoint is not None]
    assert candidates, "no unfinished trial with a checkpoint when the driver died"
    trial = max(candidates, key=lambda t: Path(t.checkpoint.path).name)
    restored = Path(trial.checkpoint.path)
    truncated = restored / CHECKPOINT_FILE
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 3])
    with pytest.raises(CheckpointError, match=str(truncated)):
        load_checkpoint(restored)
    # What it should fall back to: the newest other readable checkpoint of the trial, else a fresh start.
    fallback_epoch = 0
    for sibling in sorted(restored.parent.glob("checkpoint_*"), reverse=True):
        try:
            if sibling != restored:
                fallback_epoch = load_checkpoint(sibling)["epoch"]
                break
        except CheckpointError:  # e.g. one the killed trial was still copying
            continue
    pids_before = {r["pid"] for r in reports(restored.parent)}
    trials_before = set(trial_folders(experiment))

    resume = subprocess.run([*command, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=400)
    assert resume.returncode == 0, resume.stderr[-3000:]
    # The trial reported the bad file by path on its stderr (Ray forwards it to the driver's), then fell back.
    assert f"{truncated}: not a readable ganaug checkpoint" in resume.stderr
    assert "trying an older checkpoint" in resume.stderr or "starts afresh" in resume.stderr

    records = reports(restored.parent)
    # The trial's own log continued from the checkpoint it restored: every epoch once, in a new session's folder.
    own = [json.loads(line)["epoch"] for line in (restored.parent / "metrics.jsonl").read_text().splitlines()]
    assert own == list(range(1, records[-1]["epoch"] + 1)), own
    after = [r for r in records if r["pid"] not in pids_before]
    assert after and after[0]["epoch"] == fallback_epoch + 1, (fallback_epoch, [r["epoch"] for r in after])
    for before, later in zip(after, after[1:]):
        assert later["epoch"] == before["epoch"] + 1

    summary = pd.read_csv(experiment / "summary.csv", dtype={"trial_id": str})
    assert len(summary) == 6 and set(summary["status"]) <= {"complete", "pruned"}
    assert (summary.loc[summary["status"] == "complete", "epochs"] == epochs).all()
    # ASHA still stops trials after the resume: some trial started by the resumed driver ends pruned.
    started_after = set(trial_folders(experiment)) - trials_before
    assert started_after, "the resumed driver started no new trial"
    assert (summary[summary["trial_id"].isin(started_after)]["status"] == "pruned").any(), summary
    # Optuna heard of each trial once, with its real outcome, across the crash (none left RUNNING).
    assert sorted(journal_states(experiment, "crashed")) == sorted(summary["status"].str.upper())


# ----------------------------------------------------------------------------------------------
# 3. Storage faults at the API: atomic writes leave the old file whole; truncation is named.

def test_a_failed_write_leaves_the_previous_checkpoint_and_outputs_whole(tmp_path):
    import torch

    from ganaug.files import atomic_write
    from ganaug.trial.state import CHECKPOINT_FILE, CheckpointError, load_checkpoint, save_checkpoint

    state = {"config": {}, "epoch": 3, "classifier": {"w": torch.ones(4)}}
    save_checkpoint(tmp_path / CHECKPOINT_FILE, state)
    with pytest.raises(Exception):  # noqa: B017 - whatever torch.save raises for a lambda
        save_checkpoint(tmp_path / CHECKPOINT_FILE, {**state, "epoch": 4, "unpicklable": lambda: 0})
    assert load_checkpoint(tmp_path)["epoch"] == 3  # the previous checkpoint, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE]  # no half-written temp file left

    summary = tmp_path / "summary.csv"
    atomic_write(summary, "trial_id,status\na,complete\n")
    with pytest.raises(TypeError):
        atomic_write(summary, None)
    assert summary.read_text() == "trial_id,status\na,complete\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.csv", CHECKPOINT_FILE]

    for size in (0, 1, 100, (tmp_path / CHECKPOINT_FILE).stat().st_size - 1):
        cut = tmp_path / f"cut{size}"
        cut.mkdir()
        (cut / CHECKPOINT_FILE).write_bytes((tmp_path / CHECKPOINT_FILE).read_bytes()[:size])
        with pytest.raises(CheckpointError, match=f"{cut / CHECKPOINT_FILE}: not a readable"):
            load_checkpoint(cut)


def test_a_trial_that_recovered_from_a_failure_keeps_its_status(tmp_path):
    """Tune keeps error.txt after a retry succeeds: only a failure after the last report means `error`."""
    from ganaug.config import TrialConfig
    from ganaug.results.experiment import load_experiment

    meta = {"name": "x", "metric": {"name": "val_acc", "mode": "max"}, "max_epochs": 4,
            "base_config": TrialConfig().to_dict(), "data": {"name": "digits"}}
    (tmp_path / "ganaug_experiment.yaml").write_text(yaml.safe_dump(meta))
    failure = "Failure # 1 (occurred at 2026-01-01_10-00-05)\nThe actor died unexpectedly.\n"
    for trial, dates in {"recovered": ["10-00-01", "10-00-09"], "failed": ["10-00-01", "10-00-02"]}.items():
        folder = tmp_path / f"train_trial_{trial}_1"
        folder.mkdir()
        (folder / "params.json").write_text("{}")
        (folder / "error.txt").write_text(failure)
        records = [{"epoch": epoch, "val_acc": 0.5, "trial_id": trial, "date": f"2026-01-01_{date}"}
                   for epoch, date in enumerate(dates, start=1)]
        (folder / "result.json").write_text("".join(json.dumps(record) + "\n" for record in records))
    statuses = load_experiment(tmp_path).trials.set_index("trial_id")["status"]
    assert statuses.to_dict() == {"failed": "error", "recovered": "pruned"}
    # The states the search's Tuner ended with win over the files: Tune's state file can lag behind a failure.
    ended = {"train_trial_recovered_1": "ERROR", "train_trial_failed_1": "TERMINATED"}
    statuses = load_experiment(tmp_path, tune_states=ended).trials.set_index("trial_id")["status"]
    assert statuses.to_dict() == {"failed": "pruned", "recovered": "error"}


# ----------------------------------------------------------------------------------------------
# 5 + 6. The benchmarks, at their --quick size.

def run_benchmark(script: str, *args: str, timeout: int = 400) -> dict:
    env = {**os.environ, "RAY_ADDRESS": ""}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_chaos_benchmark_loses_no_result(tmp_path):
    figures = run_benchmark("chaos.py", "--quick", "--storage", str(tmp_path))
    assert figures["faults_injected"] >= 1 and figures["tune_failures_recorded"] >= 1
    assert figures["trials_finished"] == figures["trials"] and figures["results_lost"] == 0, figures
    assert figures["restarts_from_scratch_after_checkpoint"] == 0
    assert not figures["restarts_behind_last_checkpoint"]


@pytest.mark.slow
def test_memory_benchmark_shares_the_dataset_between_trials():
    figures = run_benchmark("memory.py", "--quick")
    assert figures["dataset_mb"] > 30 and set(figures["per_n"]) == {"2"}
    assert all(entry["all_at_once"] for entry in figures["per_n"].values())
    # Every trial reads the one copy in Ray's shared object store in place (a private copy gives 0.0)...
    assert figures["in_place"] == 1.0, figures
    # ...and holding the data costs it no private memory (a private copy per trial measures ~1.0).
    assert figures["ratio"] < 0.25, figures
