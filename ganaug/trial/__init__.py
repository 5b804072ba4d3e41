"""One trial: `run(cfg, data, report, checkpoint)`, the joint GAN + classifier loop (it never imports Ray: Tune,
evaluate, the tests and `python -m ganaug.pipeline` all call it), its checkpointed state, and its reporter
(TensorBoard, metrics.jsonl, sample grids).

    from ganaug.trial import run
    run(TrialConfig(synthetic_ratio=0.5, epochs=10), load_data({"name": "digits"}), print)
"""

from ganaug.trial.bank import GeneratorBank, LocalCoordinator
from ganaug.trial.loop import run
from ganaug.trial.reporter import TrialReporter
from ganaug.trial.state import CHECKPOINT_FILE, CheckpointError, TrialState, load_checkpoint, save_checkpoint
from ganaug.trial.synthetic import synthetic_share

__all__ = ["CHECKPOINT_FILE", "CheckpointError", "GeneratorBank", "LocalCoordinator", "TrialReporter", "TrialState",
           "load_checkpoint", "run", "save_checkpoint", "synthetic_share"]
