"""`experiment.loggers`: a tiny real search logs to a real MLflow tracking server that the test starts on 127.0.0.1
(sqlite backend store, artifacts served by the server) and is read back through MLflow's client, and to W&B in
offline mode; without `tensorboard` Tune writes no events file; a logger whose package is missing is refused before
Ray starts, naming the install command."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from spaces import write_tiny_space

from ganaug.search.tune import main


def needs(package: str):
    """`package`, imported; skipped where it is not installed (`pip install -e ".[dev]"` alone), but under CI, whose
    .ci/run installs the trackers' extras, a missing one fails instead of skipping unseen."""
    if os.environ.get("CI"):
        return importlib.import_module(package)
    return pytest.importorskip(package, reason=f'pip install -e ".[{package}]"')


def write_tracked_space(tmp: Path, name: str, **experiment) -> Path:
    """Two GAN trials of two epochs (fixed synthetic_ratio, so every trial draws sample grids), searching the
    classifier's learning rate, logging to `experiment`'s loggers."""
    return write_tiny_space(tmp, name, experiment={"num_samples": 2, "baselines_first": False, **experiment},
                            fixed={"synthetic_ratio": 0.5})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on 127.0.0.1 (no job runner: nothing here needs it), its URI; stopped with its workers."""
    needs("mlflow")
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    uri = f"http://127.0.0.1:{port}"
    with open(folder / "server.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination",
             str(folder / "artifacts")], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 180  # imports and the database's migrations: ~20 s on an idle 2-core box
            while not answers(f"{uri}/health"):
                assert server.poll() is None, (folder / "server.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "mlflow server did not answer within 180 s"
                time.sleep(0.5)
            yield uri
        finally:
            os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn worker: its own process group
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=20)
            with contextlib.suppress(ProcessLookupError):  # whatever of the group is left
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=20)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False

@pytest.mark.slow
def test_mlflow_gets_one_run_per_trial_with_its_policy_metrics_and_sample_grids(tmp_path, mlflow_server,
                                                                                monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the space's key names the server
    space = write_tracked_space(tmp_path, "tracked", loggers=["tensorboard", "mlflow"],
                                mlflow_tracking_uri=mlflow_server)
    assert main([str(space), "--num-cpus", "2"]) == 0

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    trials = {Path(folder).name: folder for folder in (tmp_path / "results" / "tracked").glob("train_trial_*")}
    assert len(runs) == len(trials) == 2
    for run in runs:
        assert run.info.status == "FINISHED"
        folder = next(path for name, path in trials.items() if name.startswith(run.data.tags["trial_name"]))
        progress = pd.read_csv(folder / "progress.csv")
        # The policy: the searched key, the fixed ones and the defaults that apply.
        params = run.data.params
        assert float(params["classifier_lr"]) == json.loads((folder / "params.json").read_text())["classifier_lr"]
        assert params["synthetic_ratio"] == "0.5" and params["gan"] == "acgan" and params["classifier"] == "mlp"
        # Every metric at every report, as Tune recorded them.
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert [point.value for point in sorted(history, key=lambda point: point.step)] == \
            pytest.approx(progress["val_acc"].tolist())
        for metric in ("d_loss", "g_loss", "synthetic_diversity", "epoch"):
            assert len(client.get_metric_history(run.info.run_id, metric)) == len(progress), metric
        # The sample grids, as artifacts served by the tracking server.
        grids = [item.path for item in client.list_artifacts(run.info.run_id, "samples")]
        assert grids and all(path.startswith("samples/samples_epoch") and path.endswith(".png") for path in grids)
        assert sorted(Path(path).name for path in grids) == sorted(path.name for path in
                                                                  (folder / "samples").glob("*.png"))
        local = client.download_artifacts(run.info.run_id, grids[-1], str(tmp_path))
        assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_wandb_offline_and_mlflow_unset_write_into_the_experiment_folder_and_no_tensorboard_no_events(tmp_path,
                                                                                                    monkeypatch):
    needs("wandb")
    needs("mlflow")
    from mlflow import MlflowClient

    monkeypatch.setenv("WANDB_MODE", "offline")  # no network, no account: runs are written for `wandb sync`
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # no URI: MLflow's runs go into the experiment folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # ... not into the folder the search runs in
    space = write_tracked_space(tmp_path, "offline", loggers=["wandb", "mlflow"])
    assert main([str(space), "--num-cpus", "2"]) == 0

    experiment = tmp_path / "results" / "offline"
    trials = sorted(experiment.glob("train_trial_*"))
    assert len(trials) == 2
    assert not list(elsewhere.iterdir()), "MLflow wrote into the working directory"
    client = MlflowClient(f"sqlite:///{experiment / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("offline").experiment_id])
    assert len(runs) == 2
    for run in runs:
        assert any(folder.name.startswith(run.data.tags["trial_name"]) for folder in trials)
        assert run.info.status == "FINISHED" and client.get_metric_history(run.info.run_id, "val_acc")
        assert run.info.artifact_uri.startswith((experiment / "mlartifacts").as_uri())  # the grids beside it
    assert list((experiment / "mlartifacts").rglob("samples/*.png"))
    for folder in trials:
        runs = list((folder / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, sorted(path.name for path in folder.rglob("*"))
        assert list(runs[0].glob("run-*.wandb")), "the run's records"
        tune_events = [path for path in folder.glob("events.out.tfevents.*") if path.suffix != ".ganaug"]
        assert not tune_events, "Tune's TensorBoard logger is off (the sample grids' own file stays)"
        assert (folder / "progress.csv").is_file() and (folder / "result.json").is_file()  # Tune's own records


@pytest.mark.parametrize("given_by", ["space", "environment"])
@pytest.mark.parametrize("uri, reason", [("file:./mlruns", "is in maintenance mode"),
                                         ("foo://tracking", "unsupported URI 'foo://tracking'")])
def test_a_tracking_store_mlflow_refuses_is_refused_before_ray_in_one_line(uri, reason, given_by, tmp_path,
                                                                           monkeypatch, capsys):
    """MLflow 3 refuses its file store (the tracking URI most tutorials still show) and unknown schemes: before Ray,
    not as a traceback from inside Tune's callback setup."""
    needs("mlflow")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    if given_by == "environment":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        space = write_tracked_space(tmp_path, "refused", loggers=["mlflow"])
        where = "$MLFLOW_TRACKING_URI (experiment.mlflow_tracking_uri unset)"
    else:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        space = write_tracked_space(tmp_path, "refused", loggers=["mlflow"], mlflow_tracking_uri=uri)
        where = "experiment.mlflow_tracking_uri"
    assert main([str(space)]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert message.startswith(f"error: {space}: {where}: MLflow cannot open the tracking store {uri!r} (")
    assert reason in message and "valid: a database such as sqlite:///path/to/mlflow.db" in message
    assert sorted(path.name for path in tmp_path.iterdir()) == [space.name]  # nothing written: no mlruns, no results


@pytest.mark.parametrize("logger", ["mlflow", "wandb"])
def test_a_logger_whose_package_is_missing_is_refused_before_ray_with_its_install_command(logger, tmp_path,
                                                                                          monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, logger, None)  # as if not installed: importlib finds no spec
    space = write_tracked_space(tmp_path, "missing", loggers=["tensorboard", logger])
    assert main([str(space)]) == 2
    message = capsys.readouterr().err.strip()
    assert message == (f"error: {space}: experiment.loggers: {logger} needs the {logger} package, which is not "
                       f'installed; install it with pip install -e ".[{logger}]" (or pip install {logger})')
    assert not (tmp_path / "results").exists()


def test_an_experiment_begun_before_ganaug_chose_its_own_loggers_resumes_with_tune_s():
    """Experiments saved before the search passed its own CSV and JSON loggers hold NoTensorBoard (or nothing) in
    their saved callbacks: the class still unpickles, and such a restored Tuner keeps Tune's default loggers, so its
    resumed trials still write result.json; a Tuner of today's (CSV logger saved) fits without them."""
    import pickle
    from types import SimpleNamespace

    from ray.tune.logger import CSVLoggerCallback

    from ganaug.search.trackers import NO_DEFAULT_LOGGERS, NoTensorBoard, own_loggers

    assert isinstance(pickle.loads(pickle.dumps(NoTensorBoard())), NoTensorBoard)

    def restored(callbacks):
        config = SimpleNamespace(callbacks=callbacks)
        return SimpleNamespace(_local_tuner=SimpleNamespace(get_run_config=lambda: config))

    with own_loggers(restored([NoTensorBoard()])):
        assert os.environ.get(NO_DEFAULT_LOGGERS) is None
    with own_loggers(restored([CSVLoggerCallback()])):
        assert os.environ.get(NO_DEFAULT_LOGGERS) == "1"
    with own_loggers():
        assert os.environ.get(NO_DEFAULT_LOGGERS) == "1"
    assert os.environ.get(NO_DEFAULT_LOGGERS) is None
