"""`python -m ganaug.tune SPACE.yaml`: search for the best GAN augmentation policy with Ray Tune.

Optuna (through an OptunaSearch that reports ASHA-stopped trials as PRUNED) proposes policies, ASHA
stops weak ones early, and each trial trains a GAN and the classifier jointly (`pipeline.run`).

    python -m ganaug.tune search_spaces/quickstart.yaml               # laptop, offline, ~1 minute
    python -m ganaug.tune search_spaces/cifar100.yaml --address auto  # on a Ray cluster
    python -m ganaug.tune search_spaces/quickstart.yaml --resume      # finish an interrupted search

This is the only module that builds Tuner, OptunaSearch, ASHAScheduler, resources and storage.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import os
import shlex
import sys
import time
import traceback
from pathlib import Path

from ganaug.config import ConfigError, TrialConfig
from ganaug.errors import EXIT_BAD_INPUT, InputError
from ganaug.space import SearchSpec, load_space, validate_storage
from ganaug.storage import check_reachable, download, mirror_of, upload

JOURNAL_FILE = "optuna_study.journal"
# The product is "tpe" + "asha". benchmarks/search_efficiency.py measures it against "random" + "fifo" (no model,
# no early stopping), "random" + "asha", and "stock_tpe" + "asha": Ray's own OptunaSearch, which tells Optuna an
# ASHA-stopped trial is COMPLETE with its early score.
SEARCHERS = ("tpe", "random", "stock_tpe")
SCHEDULERS = ("asha", "fifo")
# Result keys each finished Optuna trial carries as user_attrs (besides `status`, summary.csv's status).
USER_ATTRS = ("test_acc", "cas", "cas_ratio", "diverged")

logger = logging.getLogger("ganaug.tune")


class ExperimentError(InputError):
    """The experiment folder cannot be used as asked (exists already, or nothing there to resume)."""


# ----------------------------------------------------------------------------------------------
# The trainable: a thin adapter from Tune to pipeline.run.

def train_trial(config: dict, *, data: dict, base: dict, cpus: float = 1) -> None:
    """Ray Tune function trainable: build the TrialConfig, restore, run, report once per epoch."""
    import torch
    from ray import tune

    from ganaug.checkpoint import CheckpointError, checkpoint_candidates, load_checkpoint
    from ganaug.pipeline import run
    from ganaug.report import TrialReporter

    # Each trial uses only its CPU share, so k trials on k cores don't oversubscribe them.
    torch.set_num_threads(max(1, math.floor(cpus)))
    cfg = TrialConfig.from_dict({**base, **config}, where="trial config")
    images = unpack_data(data)
    reporter = TrialReporter(
        os.getcwd(),  # this trial's working directory on its node; Tune uploads it (sync_artifacts)
        sink=lambda metrics, checkpoint=None: tune.report(
            metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint) if checkpoint else None),
    )
    state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        # Fall back to older checkpoints (then a fresh start) when the newest is corrupt or truncated.
        for candidate in checkpoint_candidates(checkpoint):
            try:
                with candidate.as_directory() as directory:
                    state = load_checkpoint(directory, cfg)
                    reporter.restore(directory)
                break
            except CheckpointError as error:
                print(f"[ganaug] {error}; trying an older checkpoint", file=sys.stderr, flush=True)
        if state is None:
            print("[ganaug] no readable checkpoint: the trial starts afresh", file=sys.stderr, flush=True)
    try:
        run(cfg, images, reporter, checkpoint=state)
    finally:
        reporter.close()


def pack_data(data) -> dict:
    """ImageData -> dict of numpy arrays: Ray stores numpy zero-copy, so trials on a node share one copy."""
    packed = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)}
    return {k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in packed.items()}


def unpack_data(packed: dict):
    import torch

    from ganaug.data import ImageData

    # from_numpy shares the object store's read-only buffer; the pipeline never writes into it.
    with _quiet_readonly_warning():
        return ImageData(**{k: torch.from_numpy(v) if hasattr(v, "dtype") else v for k, v in packed.items()})


class _quiet_readonly_warning:
    def __enter__(self):
        import warnings

        self._context = warnings.catch_warnings()
        self._context.__enter__()
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

    def __exit__(self, *exc):
        return self._context.__exit__(*exc)


# ----------------------------------------------------------------------------------------------
# Honest multi-fidelity: ASHA-stopped trials reach Optuna as PRUNED, not COMPLETE.

def make_searcher(spec: SearchSpec, journal_path: str | None, searcher: str = "tpe"):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    class HonestOptunaSearch(OptunaSearch):
        """OptunaSearch that tells Optuna the truth about each finished trial.

        Ray's OptunaSearch marks a trial ASHA stopped early as COMPLETE with its early score, which
        biases TPE toward configurations that start fast. Here: COMPLETE only for trials that ran all
        epochs; PRUNED (with the intermediate values already reported per epoch) for early-stopped
        ones; FAIL for diverged or errored trials, so they never look like a result.
        """

        def __init__(self, *args, max_epochs: int, **kwargs):
            super().__init__(*args, **kwargs)
            self._max_epochs = max_epochs
            self._last_results: dict[str, dict] = {}

        def _told_already(self, trial_id: str) -> bool:
            """Whether the study already holds this trial as finished. After a driver crash the journal can be
            ahead of the searcher state Tune restores (saved every few seconds), and Tune then reruns a trial
            that Optuna has closed: its results must not be reported or told a second time."""
            if trial_id in self._completed_trials:
                return True
            ot_trial = self._ot_trials[trial_id]
            if ot_trial.storage.get_trial(ot_trial._trial_id).state.is_finished():
                self._completed_trials.add(trial_id)
                return True
            return False

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            if result.get("diverged") or self._told_already(trial_id):
                return
            self._last_results[trial_id] = result
            # GAN pretraining passes report with epoch 0 and the untrained classifier's score: Optuna's steps
            # are classifier epochs only, as ASHA's rungs are.
            if int(result.get("epoch", 0)) >= 1:
                self._ot_trials[trial_id].report(float(result[self.metric]), int(result["epoch"]))

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if trial_id not in self._ot_trials or self._told_already(trial_id):
                return
            result = result or self._last_results.get(trial_id)
            ot_trial = self._ot_trials[trial_id]
            states = optuna.trial.TrialState
            if error or not result or result.get("diverged") or self.metric not in result:
                self._set_user_attrs(ot_trial, result, "diverged" if result and result.get("diverged") else "error")
                self._ot_study.tell(ot_trial, state=states.FAIL)
                self._completed_trials.add(trial_id)
                return
            # Tune hands the final result only to on_trial_complete: record it as an intermediate value too.
            epoch = int(result.get("epoch", 0))
            if epoch >= 1 and epoch not in ot_trial.storage.get_trial(ot_trial._trial_id).intermediate_values:
                ot_trial.report(float(result[self.metric]), epoch)
            if epoch < self._max_epochs:
                self._set_user_attrs(ot_trial, result, "pruned")
                self._ot_study.tell(ot_trial, state=states.PRUNED)
            else:
                self._set_user_attrs(ot_trial, result, "complete")
                self._ot_study.tell(ot_trial, float(result[self.metric]), state=states.COMPLETE)
            self._completed_trials.add(trial_id)
            self._last_results.pop(trial_id, None)

        @staticmethod
        def _set_user_attrs(ot_trial, result: dict | None, status: str) -> None:
            """Record summary.csv's view of the trial in the study, so the journal reads on its own."""
            ot_trial.set_user_attr("status", status)
            for key in USER_ATTRS:
                value = (result or {}).get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    ot_trial.set_user_attr(key, float(value) if key != "diverged" else int(value))

    storage = None
    if journal_path is not None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(journal_path))
    sampler = make_sampler(spec) if searcher != "random" else optuna.samplers.RandomSampler(seed=spec.experiment.seed)
    kwargs = dict(
        space=spec.define_by_run, metric=spec.metric.name, mode=spec.metric.mode, sampler=sampler,
        storage=storage, study_name=spec.experiment.name,
        # The no-GAN baselines run first (enqueued in the study), so the search always tunes them too.
        points_to_evaluate=spec.baseline_points() or None,
    )
    if searcher == "stock_tpe":
        return OptunaSearch(**kwargs)
    return HonestOptunaSearch(**kwargs, max_epochs=spec.scheduler.max_epochs)


def make_sampler(spec: SearchSpec):
    """Optuna's TPESampler with the experiment's `sampler:` settings (README: "The searcher")."""
    import warnings

    import optuna

    settings = spec.experiment.sampler
    startup = settings.n_startup_trials
    if startup is None:  # a quarter of the budget explores at random, but never fewer than 2 or more than 10
        startup = min(10, max(2, spec.experiment.num_samples // 4))
    with warnings.catch_warnings():
        # multivariate and group are marked experimental in Optuna 5; the warning would print once per search.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=spec.experiment.seed, n_startup_trials=startup, multivariate=settings.multivariate,
            group=settings.group, constant_liar=settings.constant_liar)


# ----------------------------------------------------------------------------------------------
# Building and running the experiment.

def build_tuner(spec: SearchSpec, data, *, resume: bool = False, searcher: str = "tpe", scheduler: str = "asha",
                stop=None, reuse_actors: bool | None = None):
    """A Tuner for `spec` (or one restored from its experiment folder when resume=True).

    searcher: "tpe" (Optuna TPE, told the truth about pruned trials) | "random" (Optuna's RandomSampler);
    scheduler: "asha" | "fifo" (every trial runs all epochs); stop: Tune's RunConfig(stop=...), e.g. a
    Stopper that ends the experiment at a budget; reuse_actors: None takes `experiment.reuse_actors`. The
    defaults are the product; the rest serve benchmarks.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    for key, value, valid in (("searcher", searcher, SEARCHERS), ("scheduler", scheduler, SCHEDULERS)):
        if value not in valid:
            raise ConfigError(f"build_tuner: {key}={value!r} is not one of {', '.join(valid)}")

    resources = spec.experiment.resources
    base = spec.trial_config({}).to_dict()
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, data=pack_data(data), base=base, cpus=resources.cpu),
        {"cpu": resources.cpu, "gpu": resources.gpu},
    )
    experiment_dir = spec.experiment_dir()
    if resume:
        return tune.Tuner.restore(experiment_dir, trainable=trainable, resume_unfinished=True,
                                  resume_errored=True)
    # On remote storage the study lives in the local mirror's journal, uploaded as trials end (JournalUploader).
    local_dir = _local_view(spec).experiment_dir()
    journal = os.path.join(local_dir, JOURNAL_FILE)
    os.makedirs(local_dir, exist_ok=True)
    callbacks = [] if _is_local(experiment_dir) else [sys.modules[__name__].JournalUploader(experiment_dir, local_dir)]
    search_alg = ConcurrencyLimiter(make_searcher(spec, journal, searcher),
                                    max_concurrent=spec.experiment.max_concurrent)
    trial_scheduler = FIFOScheduler() if scheduler == "fifo" else ASHAScheduler(
        time_attr="epoch", max_t=spec.scheduler.max_epochs, grace_period=spec.scheduler.grace_period,
        reduction_factor=spec.scheduler.reduction_factor,
    )
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=spec.metric.name, mode=spec.metric.mode, search_alg=search_alg, scheduler=trial_scheduler,
            num_samples=spec.experiment.num_samples,
            # A later trial runs in a finished trial's worker process (Tune resets it and changes into the new
            # trial's folder): that skips each new process's ~4 s of importing torch, which is most of a small
            # trial's cost and halves quickstart-sized searches (benchmarks/README.md, concurrency).
            reuse_actors=spec.experiment.reuse_actors if reuse_actors is None else reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=spec.experiment.name,
            storage_path=spec.storage_uri(),
            failure_config=tune.FailureConfig(max_failures=spec.experiment.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            # Upload what TrialReporter writes (sample grids, metrics.jsonl) from whichever node ran the trial.
            sync_config=tune.SyncConfig(sync_artifacts=True),
            stop=stop,
            callbacks=callbacks,
            verbose=1,
        ),
    )


def check_experiment_folder(spec: SearchSpec, resume: bool) -> None:
    """Refuse to mix two searches in one folder, and to resume where there is nothing to resume."""
    from ray import tune

    experiment_dir = spec.experiment_dir()
    check_reachable(spec.storage_uri())  # before Tune, whose S3 calls retry (or hang) deep inside pyarrow
    exists = tune.Tuner.can_restore(experiment_dir)  # local folder or s3://: Tune looks for its state file
    if resume and not exists:
        raise ExperimentError(
            f"{experiment_dir}: no experiment to resume there; run without --resume to start it, "
            f"or pass the --name/--storage of an existing experiment")
    if not resume and exists:
        raise ExperimentError(
            f"{experiment_dir}: an experiment already exists there; add --resume to continue it, "
            f"or choose another --name")


def search(spec: SearchSpec, *, resume: bool = False, address: str | None = None,
           num_cpus: int | None = None, command: str | None = None, searcher: str = "tpe",
           scheduler: str = "asha"):
    """Run (or resume) the search described by `spec`; write summary.csv and best_policy.yaml."""
    from ganaug.data import load_data
    from ganaug.results import (
        BEST_POLICY_FILE,
        EXPERIMENT_FILE,
        SUMMARY_FILE,
        next_steps,
        save_experiment_meta,
        write_outputs,
    )

    # Every input is checked before anything is written: nothing to resume, a missing dataset or an
    # unwritable storage folder must not leave an empty storage or experiment folder behind.
    check_experiment_folder(spec, resume)
    data = load_data(spec.data)
    spec.check_image_size(data.spec.height, data.spec.width)
    spec.check_classifier(data.spec)
    spec.check_conditions(data.spec)
    validate_storage(spec)
    baselines = spec.baseline_points()
    if baselines and not resume:
        shown = ", ".join(str(point.get("traditional_aug", "as fixed")) for point in baselines)
        print(f"Baselines first: {len(baselines)} no-GAN trial(s) (synthetic_ratio 0; traditional_aug: {shown}) "
              f"start the search and count toward num_samples={spec.experiment.num_samples}", flush=True)
    local = _local_view(spec)  # results.py works on local folders: a mirror when storage is s3:// etc.
    if not resume:
        if local is not spec:  # a mirror left by an earlier experiment at this URI must not lend the study its trials
            Path(local.experiment_dir(), JOURNAL_FILE).unlink(missing_ok=True)
        save_experiment_meta(local, command)
        _upload(spec, local, [EXPERIMENT_FILE])
    else:
        _download(spec, local, [JOURNAL_FILE])  # the study continues from the bucket's copy
    with ray_session(address, num_cpus):
        started = time.time()
        tuner = build_tuner(spec, data, resume=resume, searcher=searcher, scheduler=scheduler)
        try:
            results = tuner.fit()
            if results.num_terminated + results.num_errors == len(results):  # the search is over
                close_orphaned_trials(Path(local.experiment_dir(), JOURNAL_FILE), spec.experiment.name)
        finally:
            _upload(spec, local, [JOURNAL_FILE])
        _download(spec, local)
        summary = write_outputs(local, command=command)
        _upload(spec, local, [SUMMARY_FILE, BEST_POLICY_FILE])
        print(f"\nSearch finished in {time.time() - started:.0f} s: {spec.experiment_dir()}")
        print(next_steps(local.experiment_dir(), Path(local.experiment_dir(), JOURNAL_FILE)))
        return summary


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None):
    """Ray for the length of the block: the one already initialised if any (left running), else `address` (default
    $RAY_ADDRESS) joined, else a new local Ray of `num_cpus` CPUs; a Ray started here is shut down after the block."""
    import ray

    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address != "local":
        ray.init(address=address)
    else:
        # address="local": a new Ray of our own; a bare ray.init() would join any cluster `ray start` left running.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
    try:
        yield
    finally:
        ray.shutdown()


def close_orphaned_trials(journal: Path, study_name: str) -> int:
    """Mark FAIL every Optuna trial still RUNNING once the search is over; returns how many.

    A driver killed mid-search leaves the Optuna trials of its running Tune trials open in the journal when
    Tune's saved searcher state is older than the journal; after --resume Tune reruns those trials, and the
    open ones would show as RUNNING forever (in optuna-dashboard, and to TPE as pending).
    """
    if not journal.is_file():
        return 0
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name=study_name, storage=JournalStorage(JournalFileBackend(str(journal))))
    orphans = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for frozen in orphans:
        # The same attributes as every told trial (HonestOptunaSearch), so the journal reads on its own.
        trial = optuna.trial.Trial(study, frozen._trial_id)
        trial.set_user_attr("status", "error")
        trial.set_user_attr("orphaned", True)  # its Tune trial was rerun under another Optuna trial
        trial.set_user_attr("diverged", 0)  # killed with the driver, not by a non-finite loss
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return len(orphans)


def _is_local(uri: str) -> bool:
    return "://" not in uri


def _local_view(spec: SearchSpec) -> SearchSpec:
    """`spec` itself for local storage; for a URI (s3://...), the same spec stored in a local mirror folder."""
    if _is_local(spec.storage_uri()):
        return spec
    mirror = mirror_of(spec.storage_uri())
    return spec.model_copy(update={"experiment": spec.experiment.model_copy(update={"storage": mirror})})


def _download(spec: SearchSpec, local: SearchSpec, names: list[str] | None = None) -> None:
    """Copy the experiment's small files (not its checkpoints), or only `names`, from remote storage into the
    local mirror."""
    if local is not spec:
        download(spec.experiment_dir(), local.experiment_dir(), names)


def _upload(spec: SearchSpec, local: SearchSpec, names: list[str]) -> None:
    """Copy files that results.py wrote into the local mirror up to the remote experiment folder."""
    if local is not spec:
        upload(spec.experiment_dir(), local.experiment_dir(), names)


def _journal_uploader_class() -> type:
    from ray import tune

    class JournalUploader(tune.Callback):
        """Tune callback: on remote storage, copy the local mirror's Optuna journal up whenever a trial ends, so
        a driver lost mid-search leaves the study in the bucket for --resume (Tune calls it after the searcher)."""

        def __init__(self, experiment_uri: str, local_dir: str):
            self.experiment_uri, self.local_dir = experiment_uri, local_dir

        def on_trial_complete(self, iteration, trials, trial, **info):
            upload(self.experiment_uri, self.local_dir, [JOURNAL_FILE])

        def on_trial_error(self, iteration, trials, trial, **info):
            upload(self.experiment_uri, self.local_dir, [JOURNAL_FILE])

    JournalUploader.__module__, JournalUploader.__qualname__ = __name__, "JournalUploader"
    return JournalUploader


def __getattr__(name: str):
    # JournalUploader subclasses tune.Callback: built on first use, so importing this module imports no Ray, and
    # still found here by name when Tune unpickles tuner.pkl on --resume.
    if name == "JournalUploader":
        globals()[name] = _journal_uploader_class()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------------------
# Command line.

def parse_args(argv: list[str] | None = None, prog: str = "python -m ganaug.tune") -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("space", help="search-space YAML file (see search_spaces/)")
    parser.add_argument("--smoke-test", action="store_true",
                        help="2 trials, 2 epochs, a small subset: checks the whole path in seconds")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted experiment of this space")
    parser.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--storage", help="results folder or s3:// URI (overrides experiment.storage)")
    parser.add_argument("--name", help="experiment name (overrides experiment.name)")
    parser.add_argument("--num-samples", type=int, help="trials to run (overrides experiment.num_samples)")
    parser.add_argument("--max-concurrent", type=int, help="trials at once (overrides experiment.max_concurrent)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the local Ray started when no address is given")
    parser.add_argument("--debug", action="store_true",
                        help="on bad input, also print the traceback behind the message (e.g. your model factory's)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, prog: str = "python -m ganaug.tune") -> int:
    args = parse_args(argv, prog)
    overrides = {k: v for k, v in {"name": args.name, "storage": args.storage, "num_samples": args.num_samples,
                                   "max_concurrent": args.max_concurrent}.items() if v is not None}
    try:
        spec = load_space(args.space, **overrides)
        if args.smoke_test:
            spec = spec.smoke()
        command = f"{prog} " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
        search(spec, resume=args.resume, address=args.address, num_cpus=args.num_cpus, command=command)
    except InputError as error:
        if args.debug:
            traceback.print_exception(error)
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
