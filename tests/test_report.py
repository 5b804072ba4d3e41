"""TrialReporter: the per-trial log continues across a restore from a checkpoint, once per epoch."""

import json
import shutil

import pytest

from ganaug.config import TrialConfig
from ganaug.data.splits import load_data
from ganaug.trial.loop import run
from ganaug.trial.reporter import LOG_FILE, TrialReporter
from ganaug.trial.state import load_checkpoint


def logged_epochs(folder):
    return [json.loads(line)["epoch"] for line in (folder / LOG_FILE).read_text().splitlines()]


@pytest.mark.parametrize("fresh_folder", [True, False], ids=["new-folder", "same-folder"])
def test_restored_run_continues_the_log_without_gaps_or_repeats(tmp_path, fresh_folder):
    data = load_data({"name": "digits", "val_fraction": 0.2, "seed": 0})
    cfg = TrialConfig(synthetic_ratio=0.0, classifier_width=0.25, epochs=4, batch_size=128, checkpoint_every=2,
                      cas_epochs=0)
    saved = tmp_path / "saved_checkpoint"

    def keep_epoch_two(metrics, checkpoint=None):
        if checkpoint is not None and metrics["epoch"] == 2:
            shutil.copytree(checkpoint, saved)
        if metrics["epoch"] == 3:  # the process dies after logging epoch 3, past its last checkpoint
            raise KeyboardInterrupt

    first = tmp_path / "first"
    with pytest.raises(KeyboardInterrupt):
        run(cfg, data, TrialReporter(first, sink=keep_epoch_two))
    assert logged_epochs(first) == [1, 2, 3]
    assert logged_epochs(saved) == [1, 2]  # the log travelled with the checkpoint

    second = tmp_path / "second" if fresh_folder else first
    reporter = TrialReporter(second)
    reporter.restore(saved)
    run(cfg, data, reporter, checkpoint=load_checkpoint(saved, cfg))
    assert logged_epochs(second) == [1, 2, 3, 4]
    lines = [json.loads(line) for line in (second / LOG_FILE).read_text().splitlines()]
    assert all(0.0 <= line["val_acc"] <= 1.0 for line in lines)


def test_restore_from_a_checkpoint_without_a_log_keeps_the_folder_as_it_is(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / LOG_FILE).write_text('{"epoch": 1}\n')
    TrialReporter(tmp_path / "log").restore(tmp_path / "ckpt")
    assert logged_epochs(tmp_path / "log") == [1]
