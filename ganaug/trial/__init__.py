"""One trial: `run(cfg, data, report, checkpoint, bank)`, the generator's phase then the classifier's (it never imports
Ray: Tune, evaluate, the tests and `python -m ganaug.pipeline` all call it), the sources of its synthetic images, its
checkpointed state, the generator bank, and its reporter (TensorBoard, metrics.jsonl, sample grids).

    from ganaug.trial import run
    run(TrialConfig(synthetic_ratio=0.5, epochs=10), load_data({"name": "digits"}), print)
"""

from ganaug.trial.bank import GeneratorBank, LocalCoordinator
from ganaug.trial.loop import run
from ganaug.trial.reporter import TrialReporter
from ganaug.trial.sources import SOURCES, ImagePool, ImportedSource, SourceError, build_imported, check_images
from ganaug.trial.state import CHECKPOINT_FILE, CheckpointError, TrialState, load_checkpoint, save_checkpoint
from ganaug.trial.synthetic import synthetic_share

__all__ = ["CHECKPOINT_FILE", "CheckpointError", "GeneratorBank", "ImagePool", "ImportedSource", "LocalCoordinator",
           "SOURCES", "SourceError", "TrialReporter", "TrialState", "build_imported", "check_images", "load_checkpoint",
           "run", "save_checkpoint", "synthetic_share"]
