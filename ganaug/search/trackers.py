"""Where each trial's metrics go (`experiment.loggers`): Tune's own records, TensorBoard, MLflow, Weights & Biases, as
Tune logger callbacks on the driver. MLflow and W&B are imported only when the space names them; the space refused a
logger whose package is missing before Ray started (ganaug.space: ExperimentSection.loggers), and `check_mlflow`
opens MLflow's tracking store before Ray starts.

    experiment:
      loggers: [tensorboard, mlflow]   # MLflow: experiment.mlflow_tracking_uri, $MLFLOW_TRACKING_URI or
                                       #   sqlite:///<experiment>/mlflow.db
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.fs
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, LoggerCallback, TBXLoggerCallback

from ganaug.space import SearchSpec, SpaceError

logger = logging.getLogger(__name__)

SAMPLES_FOLDER = "samples"  # the sample grids trial.TrialReporter writes into each trial folder
# With no tracking URI set, the MLflow runs go into the experiment folder's own database, their artifacts beside it.
MLFLOW_DATABASE, MLFLOW_ARTIFACTS = "mlflow.db", "mlartifacts"
NO_DEFAULT_LOGGERS = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"  # Ray Tune's switch: "1" = add no logger of its own


def tracker_callbacks(space: SearchSpec, folder: str) -> list:
    """The Tune callbacks that record each trial: Tune's CSV and JSON records (always: summary.csv, evaluate and the
    notebooks read them), then those of `space.experiment.loggers`; `folder`: the experiment's local folder (on
    remote storage its mirror), where the MLflow runs go when no tracking URI is set. Fit the Tuner inside
    `own_loggers()`, or Tune adds its TensorBoard logger besides these."""
    loggers = space.experiment.loggers
    callbacks: list = [CSVLoggerCallback(), JsonLoggerCallback()]
    if "tensorboard" in loggers:
        callbacks.append(TensorBoard())
    if "mlflow" in loggers:
        callbacks.append(mlflow_callback(space, mlflow_tracking_uri(space, folder)))
    if "wandb" in loggers:
        callbacks.append(wandb_callback(space))
    return callbacks


@contextlib.contextmanager
def own_loggers(tuner: Any = None):
    """Tune adds none of its default loggers to a Tuner fitted in this block, so the experiment has only those of
    tracker_callbacks (a Tune TensorBoard logger would write events without `tensorboard` in loggers, and brings a
    misleading line: TensorBoard's docstring). A `tuner` restored from an experiment begun before ganaug passed its
    own CSV and JSON loggers (its saved callbacks hold none) keeps Tune's defaults, so its resumed trials still write
    result.json and progress.csv."""
    # Tuner keeps its run config on its private _local_tuner (Ray 2.x); without one, ganaug's own loggers are assumed.
    local = getattr(tuner, "_local_tuner", None)
    saved_callbacks = local.get_run_config().callbacks if local is not None else None
    if saved_callbacks is not None and not any(isinstance(c, CSVLoggerCallback) for c in saved_callbacks):
        yield
        return
    saved = os.environ.get(NO_DEFAULT_LOGGERS)
    os.environ[NO_DEFAULT_LOGGERS] = "1"
    try:
        yield
    finally:
        if saved is None:
            del os.environ[NO_DEFAULT_LOGGERS]
        else:
            os.environ[NO_DEFAULT_LOGGERS] = saved


class NoTensorBoard(TBXLoggerCallback):
    """What the saved callbacks of an experiment begun before TensorBoard (below) hold when its loggers left
    TensorBoard out: kept so that such an experiment resumes. It writes nothing, as it always did."""

    def __init__(self):  # no SummaryWriter
        pass

    def log_trial_start(self, trial) -> None:
        pass

    def log_trial_result(self, iteration, trial, result) -> None:
        pass

    def log_trial_end(self, trial, failed: bool = False) -> None:
        pass


class TensorBoard(LoggerCallback):
    """Tune's TensorBoard logger (TBXLoggerCallback: every metric, the HPARAMS tab) under a type of its own.

    Whenever a TBXLoggerCallback is among the callbacks, Tune prints "To visualize your results with TensorBoard,
    run: `tensorboard --logdir /tmp/ray/session_.../driver_artifacts`": its staging folder, not the experiment's, and
    gone with the Ray session. Under this type (and with own_loggers) Tune leaves that line out; the search's next
    steps name the experiment folder instead.
    """

    def __init__(self):
        self.writer = TBXLoggerCallback()

    def log_trial_start(self, trial) -> None:
        self.writer.log_trial_start(trial)

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        self.writer.log_trial_result(iteration, trial, result)

    def log_trial_end(self, trial, failed: bool = False) -> None:
        self.writer.log_trial_end(trial, failed)


def mlflow_tracking_uri(space: SearchSpec, folder: str) -> str:
    """Where the MLflow logger writes: experiment.mlflow_tracking_uri, else $MLFLOW_TRACKING_URI, else the database in
    `folder` (the experiment's local folder), sqlite:///<folder>/mlflow.db."""
    return given_tracking_uri(space) or experiment_database(folder)


def given_tracking_uri(space: SearchSpec) -> str | None:
    """The MLflow tracking URI set for the search: experiment.mlflow_tracking_uri, else $MLFLOW_TRACKING_URI; None."""
    return space.experiment.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def experiment_database(folder: str) -> str:
    """The tracking URI of the MLflow database in the experiment folder `folder`."""
    return f"sqlite:///{Path(folder, MLFLOW_DATABASE).absolute()}"


def check_mlflow(space: SearchSpec) -> None:
    """With the mlflow logger and a tracking URI set (experiment.mlflow_tracking_uri, $MLFLOW_TRACKING_URI), open its
    store through MLflow's own store lookup, with the other input checks (before anything is written, before Ray): a
    store MLflow refuses (the file store of `file:./mlruns`, an unknown scheme, a database without its driver) ends
    in one SpaceError line naming the URI and what would be valid. With none set: create_mlflow_database."""
    uri = given_tracking_uri(space)
    if "mlflow" in space.experiment.loggers and uri:
        _mlflow_client(space, uri)


def create_mlflow_database(space: SearchSpec, folder: str) -> None:
    """With the mlflow logger and no tracking URI set, create the MLflow database of the experiment's local folder
    `folder` (sqlite:///<folder>/mlflow.db) and its MLflow experiment, whose artifacts (the sample grids) go to
    <folder>/mlartifacts: MLflow's defaults are both in whatever folder the search runs in."""
    if "mlflow" not in space.experiment.loggers or given_tracking_uri(space):
        return
    client = _mlflow_client(space, experiment_database(folder))
    if client.get_experiment_by_name(space.experiment.name) is None:
        client.create_experiment(space.experiment.name, artifact_location=Path(folder, MLFLOW_ARTIFACTS).absolute()
                                 .as_uri())


def _mlflow_client(space: SearchSpec, uri: str):
    """MLflow's client of the tracking store `uri`, which it looks up and opens (a database: creates its tables), or
    a SpaceError line naming the URI, where it was set and what would be valid."""
    from mlflow import MlflowClient

    where = "experiment.mlflow_tracking_uri" if space.experiment.mlflow_tracking_uri else \
        "$MLFLOW_TRACKING_URI (experiment.mlflow_tracking_uri unset)" if os.environ.get("MLFLOW_TRACKING_URI") else \
        "experiment.mlflow_tracking_uri (unset: the experiment folder's database)"
    try:
        return MlflowClient(tracking_uri=uri)
    except Exception as error:  # MLflow refuses with MlflowException; a missing database driver is an ImportError
        reason = str(error).strip().split(". ")[0].splitlines()[0]
        raise SpaceError(f"{space.path}: {where}: MLflow cannot open the tracking store {uri!r} ({reason}); valid: "
                         "a database such as sqlite:///path/to/mlflow.db, an MLflow server such as "
                         "http://127.0.0.1:5000, or none set: sqlite:///<experiment folder>/mlflow.db") from None


def mlflow_callback(space: SearchSpec, tracking_uri: str):
    """One MLflow run per trial, in the MLflow experiment named after the ganaug experiment: the trial's whole
    policy as params, every reported metric at every report (step = Tune's training_iteration), and the trial's
    sample grids as artifacts under `samples/` when it ends."""
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class MLflowTracker(MLflowLoggerCallback):
        def log_trial_start(self, trial) -> None:
            started = trial in self._trial_runs  # Tune's trial -> run id (a restarted trial keeps its run)
            super().log_trial_start(trial)  # the run, tagged trial_name, with the searched keys (trial.config)
            if not started:
                # The rest of the policy: fixed keys and defaults, as best_policy.yaml records them.
                policy = space.trial_config(trial.config).identity()
                rest = {key: value for key, value in policy.items() if key not in trial.config}
                self.mlflow_util.log_params(run_id=self._trial_runs[trial], params_to_log=rest)

        def log_trial_end(self, trial, failed: bool = False) -> None:
            try:
                with tempfile.TemporaryDirectory() as folder:
                    if copy_samples(trial, os.path.join(folder, SAMPLES_FOLDER)):
                        self.mlflow_util.save_artifacts(run_id=self._trial_runs[trial], dir=folder)
            except OSError as error:  # the run keeps its params and metrics; the search goes on
                logger.warning("MLflow: the sample grids of %s were not logged: %s", trial, error)
            super().log_trial_end(trial, failed)  # ends the run: FINISHED, or FAILED for an errored trial

    return MLflowTracker(tracking_uri=tracking_uri, experiment_name=space.experiment.name,
                         tags={"ganaug_space": space.path})


def wandb_callback(space: SearchSpec):
    """One W&B run per trial, in project $WANDB_PROJECT (default: the experiment's name), grouped by experiment;
    WANDB_MODE=offline writes the runs into each trial folder's wandb/ without a network (`wandb sync` uploads them
    later)."""
    from ray.air.integrations.wandb import WandbLoggerCallback

    # The driver's WANDB_MODE, on any node.
    settings: dict[str, Any] = {"mode": os.environ["WANDB_MODE"]} if os.environ.get("WANDB_MODE") else {}
    return WandbLoggerCallback(project=os.environ.get("WANDB_PROJECT") or space.experiment.name,
                               group=space.experiment.name, **settings)


def copy_samples(trial, folder: str) -> bool:
    """Copy the trial's sample grids from its folder in the experiment's storage (local or s3://) into `folder`;
    False when it has none (no generator, or stopped before its first grid)."""
    filesystem = trial.storage.storage_filesystem
    source = f"{trial.path}/{SAMPLES_FOLDER}"
    if filesystem.get_file_info(source).type != pyarrow.fs.FileType.Directory:
        return False
    os.makedirs(folder, exist_ok=True)
    pyarrow.fs.copy_files(source, folder, source_filesystem=filesystem,
                          destination_filesystem=pyarrow.fs.LocalFileSystem())
    return True
