"""`python -m ganaug.tune SPACE.yaml`: search for the best GAN augmentation policy with Ray Tune.

Optuna (through an OptunaSearch that reports ASHA-stopped trials as PRUNED) proposes policies, ASHA
stops weak ones early, and each trial trains a GAN and the classifier jointly (`ganaug.trial.run`).

    python -m ganaug.tune search_spaces/quickstart.yaml               # laptop, offline, ~1 minute
    python -m ganaug.tune search_spaces/cifar100.yaml --address auto  # on a Ray cluster
    python -m ganaug.tune search_spaces/quickstart.yaml --resume      # finish an interrupted search

This is the only module that builds Tuner, ASHAScheduler, resources and storage; search/searchers.py builds the
OptunaSearch it is given.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import sys
import time
from pathlib import Path

import torch
from ray import tune
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import ConcurrencyLimiter

from ganaug.cluster import RemoteCoordinator, bank_coordinator, ray_session
from ganaug.config import ConfigError, TrialConfig, without_inactive
from ganaug.data import ImageData, load_data
from ganaug.errors import EXIT_BAD_INPUT as EXIT_BAD_INPUT  # re-exported: the exit code of this command on bad input
from ganaug.errors import InputError, exit_code
from ganaug.results import (
    BEST_POLICY_FILE,
    EXPERIMENT_FILE,
    JOURNAL_FILE,
    SUMMARY_FILE,
    check_reachable,
    download,
    is_uri,
    mirror_of,
    next_steps,
    save_experiment_meta,
    upload,
    write_outputs,
)
from ganaug.search.ordered import OrderedASHA, horizon, make_ordered_searcher
from ganaug.search.recovery import SUPERSEDED, recover_lost_trials, set_aside_unlisted_trials
from ganaug.search.schedulers import FullBaselinesASHA
from ganaug.search.searchers import SEARCHERS, close_orphaned_trials, make_searcher
from ganaug.search.trackers import check_mlflow, create_mlflow_database, own_loggers, tracker_callbacks
from ganaug.space import BASELINE_AXES, SearchSpec, check_data, load_space, validate_storage
from ganaug.trial import CheckpointError, GeneratorBank, TrialReporter, load_checkpoint, run

# The product is "asha" (with the "tpe" searcher); "fifo" (every trial runs all epochs) is one of the baselines
# benchmarks/search_efficiency.py measures it against (searchers.SEARCHERS lists the searchers).
SCHEDULERS = ("asha", "fifo")

logger = logging.getLogger(__name__)


class ExperimentError(InputError):
    """The experiment folder cannot be used as asked (exists already, or nothing there to resume)."""


# ----------------------------------------------------------------------------------------------
# The trainable: a thin adapter from Tune to trial.run.

def train_trial(config: dict, *, data: dict, base: dict, cpus: float = 1, generators: str | None = None,
                coordinator: RemoteCoordinator | None = None, deterministic: bool = False) -> None:
    """Ray Tune function trainable: build the TrialConfig, restore, run, report once per epoch; `generators`: the
    generator bank's folder (None: off), shared through `coordinator`; `deterministic`: experiment.deterministic."""
    # Each trial uses only its CPU share, so k trials on k cores don't oversubscribe them (and a deterministic
    # search's trials always split their sums the same way).
    torch.set_num_threads(max(1, math.floor(cpus)))
    if deterministic:
        # Every op with a deterministic kernel uses it, and cuBLAS the fixed workspace that makes it one (set before
        # this process first uses CUDA); an op with none warns and runs (docs/searcher.md: GPUs).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    cfg = TrialConfig.from_dict(without_inactive({**base, **config}), where="trial config")
    images = ImageData.unpack(data)
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
    bank = GeneratorBank(generators, coordinator, owner=tune.get_context().get_trial_id()) if generators else None
    try:
        run(cfg, images, reporter, checkpoint=state, bank=bank)
    finally:
        reporter.close()


def checkpoint_candidates(checkpoint):
    """The checkpoint Tune restored, then its older siblings in the trial folder, newest first, so that a trial
    falls back to an older one when the newest is corrupt or truncated."""
    yield checkpoint
    try:
        parent = Path(checkpoint.path).parent
        siblings = sorted(parent.glob("checkpoint_*"), reverse=True)
    except Exception:  # remote storage: only the latest is reachable here
        return
    for sibling in siblings:
        if sibling.name != Path(checkpoint.path).name:
            yield tune.Checkpoint.from_directory(str(sibling))


# ----------------------------------------------------------------------------------------------
# Building and running the experiment.

class JournalUploader(tune.Callback):
    """Tune callback: on remote storage, copy the local mirror's Optuna journal up whenever a trial ends, so
    a driver lost mid-search leaves the study in the bucket for --resume (Tune calls it after the searcher)."""

    def __init__(self, experiment_uri: str, local_dir: str):
        self.experiment_uri, self.local_dir = experiment_uri, local_dir

    def on_trial_complete(self, iteration, trials, trial, **info):
        upload(self.experiment_uri, self.local_dir, [JOURNAL_FILE])

    def on_trial_error(self, iteration, trials, trial, **info):
        upload(self.experiment_uri, self.local_dir, [JOURNAL_FILE])


def build_tuner(space: SearchSpec, data, *, resume: bool = False, searcher: str = "tpe", scheduler: str = "asha",
                stop=None, reuse_actors: bool | None = None):
    """A Tuner for `space` (or one restored from its experiment folder when resume=True).

    searcher: "tpe" (Optuna TPE, told the truth about pruned trials) | "random" (Optuna's RandomSampler);
    scheduler: "asha" | "fifo" (every trial runs all epochs); stop: Tune's RunConfig(stop=...), e.g. a
    Stopper that ends the experiment at a budget; reuse_actors: None takes `experiment.reuse_actors`. The
    defaults are the product; the rest serve benchmarks. Fit it inside `trackers.own_loggers()`, as `search` does.
    """
    for key, value, valid in (("searcher", searcher, SEARCHERS), ("scheduler", scheduler, SCHEDULERS)):
        if value not in valid:
            raise ConfigError(f"build_tuner: {key}={value!r} is not one of {', '.join(valid)}")
    deterministic = space.experiment.deterministic
    if deterministic and (searcher, scheduler) != ("tpe", "asha"):
        raise ConfigError(f"build_tuner: experiment.deterministic orders the tpe searcher and asha scheduler; got "
                          f"searcher={searcher!r}, scheduler={scheduler!r}")

    resources = space.experiment.resources
    space.trial_config({})  # the fixed keys and the defaults make a valid trial
    base = space.base_config()
    generators = space.generators_dir()
    coordinator = bank_coordinator(space.experiment_dir()) if generators else None
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, data=data.pack(), base=base, cpus=resources.cpu, generators=generators,
                             coordinator=coordinator, deterministic=deterministic),
        {"cpu": resources.cpu, "gpu": resources.gpu},
    )
    experiment_dir = space.experiment_dir()
    if resume:
        if deterministic:
            rerun = set_aside_unlisted_trials(experiment_dir)
            if rerun:
                print(f"Resuming deterministically: {len(rerun)} trial(s) started after Tune last saved its state; "
                      f"they are proposed and run again (their first runs: {SUPERSEDED}/)", flush=True)
        lost = recover_lost_trials(experiment_dir)
        if lost:
            print(f"Resuming: {lost} trial(s) the stopped driver had started never reached Tune's saved state; "
                  f"they start again, so the search still runs num_samples={space.experiment.num_samples}",
                  flush=True)
        return tune.Tuner.restore(experiment_dir, trainable=trainable, resume_unfinished=True,
                                  resume_errored=True)
    # On remote storage the study lives in the local mirror's journal, uploaded as trials end (JournalUploader).
    local_dir = local_view(space).experiment_dir()
    journal = os.path.join(local_dir, JOURNAL_FILE)
    os.makedirs(local_dir, exist_ok=True)
    callbacks: list[tune.Callback] = [JournalUploader(experiment_dir, local_dir)] if is_uri(experiment_dir) else []
    callbacks += tracker_callbacks(space, local_dir)  # Tune's records; experiment.loggers: TensorBoard, MLflow, W&B
    search_alg = ConcurrencyLimiter(
        make_ordered_searcher(space, journal) if deterministic else make_searcher(space, journal, searcher),
        max_concurrent=space.experiment.max_concurrent)
    # scheduler.full_baselines: the baselines run first are never stopped at a rung (search.schedulers says why).
    baselines = space.baseline_points() if space.scheduler.full_baselines else []
    trial_scheduler = FIFOScheduler() if scheduler == "fifo" else \
        (OrderedASHA if deterministic else FullBaselinesASHA)(
            time_attr="epoch", max_t=space.scheduler.max_epochs, grace_period=space.scheduler.grace_epochs(),
            reduction_factor=space.scheduler.reduction_factor, baselines=baselines)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=space.metric.name, mode=space.metric.mode, search_alg=search_alg, scheduler=trial_scheduler,
            num_samples=space.experiment.num_samples,
            # A later trial runs in a finished trial's worker process (Tune resets it and changes into the new
            # trial's folder): that skips each new process's ~4 s of importing torch, which is most of a small
            # trial's cost and halves quickstart-sized searches (benchmarks/README.md, concurrency).
            reuse_actors=space.experiment.reuse_actors if reuse_actors is None else reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=space.experiment.name,
            storage_path=space.storage_uri(),
            failure_config=tune.FailureConfig(max_failures=space.experiment.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            # Upload what TrialReporter writes (sample grids, metrics.jsonl) from whichever node ran the trial.
            sync_config=tune.SyncConfig(sync_artifacts=True),
            stop=stop,
            callbacks=callbacks,
            verbose=1,
        ),
    )


def check_experiment_folder(space: SearchSpec, resume: bool) -> None:
    """Refuse to mix two searches in one folder, and to resume where there is nothing to resume."""
    experiment_dir = space.experiment_dir()
    check_reachable(space.storage_uri())  # before Tune, whose S3 calls retry (or hang) deep inside pyarrow
    exists = tune.Tuner.can_restore(experiment_dir)  # local folder or s3://: Tune looks for its state file
    if resume and not exists:
        raise ExperimentError(
            f"{experiment_dir}: no experiment to resume there; run without --resume to start it, "
            f"or pass the --name/--storage of an existing experiment")
    if not resume and exists:
        raise ExperimentError(
            f"{experiment_dir}: an experiment already exists there; add --resume to continue it, "
            f"or choose another --name")


def search(space: SearchSpec, *, resume: bool = False, address: str | None = None,
           num_cpus: int | None = None, command: str | None = None, searcher: str = "tpe",
           scheduler: str = "asha"):
    """Run (or resume) the search described by `space`; write summary.csv and best_policy.yaml."""
    # Every input is checked before anything is written: nothing to resume, a missing dataset or an
    # unwritable storage folder must not leave an empty storage or experiment folder behind.
    check_experiment_folder(space, resume)
    data = check_data(space, load_data(space.data))  # with the images of its synthetic folders, which travel with it
    check_mlflow(space)  # with the mlflow logger: the tracking store of the URI set, opened
    validate_storage(space)  # and the generator bank's location
    create_mlflow_database(space, local_view(space).experiment_dir())  # with the mlflow logger and no URI set
    for warning in space.unsearched_ablations():  # evaluate's no-GAN baselines the search does not tune
        print(warning, file=sys.stderr, flush=True)
    baselines = space.baseline_points()
    if baselines and not resume:
        no_gan = [point for point in baselines if not float(point["synthetic_ratio"]) > 0]
        shown = "; ".join(" ".join(f"{key} {point[key]}" for key in BASELINE_AXES
                                   if point.get(key, "none") != "none") or "no augmentation" for point in no_gan)
        twins = [point for point in baselines if float(point["synthetic_ratio"]) > 0]
        paired = f", then {len(twins)} synthetic twin(s) (the augmentation baselines with synthetic_ratio " \
                 f"{twins[0]['synthetic_ratio']})" if twins else ""
        full = ", run every epoch" if space.scheduler.full_baselines else ""
        print(f"Baselines first: {len(no_gan)} no-GAN trial(s) (synthetic_ratio 0: {shown}){paired} start the "
              f"search{full} and count toward num_samples={space.experiment.num_samples}", flush=True)
    if space.experiment.deterministic and not resume:
        back = horizon(space.experiment.max_concurrent)
        print(f"Deterministic: trial k is proposed from, and judged at ASHA's rungs against, trials 0 .. k-{back} "
              f"only, and waits for them to finish (docs/searcher.md)", flush=True)
    local = local_view(space)  # ganaug.results works on local folders: a mirror when storage is s3:// etc.
    if not resume:
        if local is not space:  # a mirror left by an earlier experiment at this URI must not lend the study its trials
            Path(local.experiment_dir(), JOURNAL_FILE).unlink(missing_ok=True)
        save_experiment_meta(local, command, generators=space.generators_dir())
        upload_from_mirror(space, local, [EXPERIMENT_FILE])
    else:
        download_to_mirror(space, local, [JOURNAL_FILE])  # the study continues from the bucket's copy
    with ray_session(address, num_cpus):
        started = time.time()
        tuner = build_tuner(space, data, resume=resume, searcher=searcher, scheduler=scheduler)
        try:
            with own_loggers(tuner):
                results = tuner.fit()
            over = results.num_terminated + results.num_errors == len(results)
            if over:
                close_orphaned_trials(Path(local.experiment_dir(), JOURNAL_FILE), space.experiment.name)
        finally:
            upload_from_mirror(space, local, [JOURNAL_FILE])
    # After Ray has shut down, which ends the stream of the workers' log lines to this terminal: the summary and
    # the next steps are the last lines the search prints.
    if resume and space.experiment.deterministic:  # the trials it ran again, if Tune synced a stale copy back up
        set_aside_unlisted_trials(space.experiment_dir())
    download_to_mirror(space, local)
    # How trials ended, as the Tuner knows it: Tune's state file on disk may not have caught up with the last
    # failure yet. A trial with an error ended in it; once the search is over, every other one terminated.
    ended = {Path(result.path).name: "ERROR" if result.error else "TERMINATED" for result in results
             if result.error or over}
    summary = write_outputs(local, command=command, tune_states=ended)
    upload_from_mirror(space, local, [SUMMARY_FILE, BEST_POLICY_FILE])
    print(f"\nSearch finished in {time.time() - started:.0f} s: {space.experiment_dir()}")
    print(next_steps(local.experiment_dir(), Path(local.experiment_dir(), JOURNAL_FILE)))
    return summary


# Remote storage: the experiment in a local mirror.

def local_view(space: SearchSpec) -> SearchSpec:
    """`space` itself for local storage; for a URI (s3://...), the same space stored in a local mirror folder."""
    if not is_uri(space.storage_uri()):
        return space
    mirror = mirror_of(space.storage_uri())
    return space.model_copy(update={"experiment": space.experiment.model_copy(update={"storage": mirror})})


def download_to_mirror(space: SearchSpec, local: SearchSpec, names: list[str] | None = None) -> None:
    """Copy the experiment's small files (not its checkpoints), or only `names`, from remote storage into the
    local mirror `local` (local_view(space)); nothing when the storage is local."""
    if local is not space:
        download(space.experiment_dir(), local.experiment_dir(), names)


def upload_from_mirror(space: SearchSpec, local: SearchSpec, names: list[str]) -> None:
    """Copy files written into the local mirror `local` (local_view(space)) up to the remote experiment folder;
    nothing when the storage is local."""
    if local is not space:
        upload(space.experiment_dir(), local.experiment_dir(), names)


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

    def run_search() -> None:
        space = load_space(args.space, **overrides)
        if args.smoke_test:
            space = space.smoke()
        command = f"{prog} " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
        search(space, resume=args.resume, address=args.address, num_cpus=args.num_cpus, command=command)

    return exit_code(run_search, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
