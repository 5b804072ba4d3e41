"""Where each trial's metrics go besides Tune's own records (`experiment.loggers`): TensorBoard, MLflow, Weights &
Biases, as Tune logger callbacks on the driver. MLflow and W&B are imported only when the space names them; the space
refused a logger whose package is missing before Ray started (ganaug.space: ExperimentSection.loggers).

    experiment:
      loggers: [tensorboard, mlflow]   # MLflow: $MLFLOW_TRACKING_URI or experiment.mlflow_tracking_uri
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import pyarrow.fs
from ray.tune.logger import TBXLoggerCallback

from ganaug.space import SearchSpec

logger = logging.getLogger(__name__)

SAMPLES_FOLDER = "samples"  # the sample grids trial.TrialReporter writes into each trial folder


def tracker_callbacks(space: SearchSpec) -> list:
    """The Tune callbacks of `space.experiment.loggers` (Tune adds its CSV and JSON loggers itself)."""
    loggers = space.experiment.loggers
    callbacks: list = []
    if "tensorboard" not in loggers:
        callbacks.append(NoTensorBoard())
    if "mlflow" in loggers:
        callbacks.append(mlflow_callback(space))
    if "wandb" in loggers:
        callbacks.append(wandb_callback(space))
    return callbacks


class NoTensorBoard(TBXLoggerCallback):
    """Stands in for Tune's TensorBoard logger, which Tune adds to every experiment that has none, and writes
    nothing: `loggers` without tensorboard. (Each trial still writes its sample grids, as PNGs and TensorBoard
    images, through trial.TrialReporter.)"""

    def __init__(self):  # no SummaryWriter: nothing is ever written
        pass

    def log_trial_start(self, trial) -> None:
        pass

    def log_trial_result(self, iteration, trial, result) -> None:
        pass

    def log_trial_end(self, trial, failed: bool = False) -> None:
        pass


def mlflow_callback(space: SearchSpec):
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

    return MLflowTracker(tracking_uri=space.experiment.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"),
                         experiment_name=space.experiment.name, tags={"ganaug_space": space.path})


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
