"""Before a search resumes: make the count of trials Tune's search generator saved agree with the trials Tune saved.

Tune keeps its trial list (`experiment_state-*.json`) and its search generator's count of created trials
(`search_gen_state-*.json`, which ends the search once it reaches num_samples) in two files, written together but
uploaded to remote storage one after the other. A driver killed between the two uploads leaves a count above the
trials the list holds: the trials created in that window are in no list, so nobody resumes them, and the search
generator, believing them created, never creates replacements — the resumed search ends short of num_samples
(seen with S3 storage: 3 of 4 trials). `recover_lost_trials` lowers the count to the trials that exist, so the
resumed search creates the lost ones afresh.

The reverse kill leaves the list ahead of the search generator's state: an unfinished trial in the list that the
saved concurrency limiter never handed out. Tune reruns it, but the limiter would drop its completion (it passes
on only the trials it holds), so its Optuna trial would stay open; `recover_lost_trials` makes the limiter hold it,
and the searcher adopts it at its first result (searchers.HonestOptunaSearch._adopt).

A deterministic search (ganaug.search.ordered) runs a trial the list does not hold again instead, from the start:
`set_aside_unlisted_trials` moves its folder out of the way first, and the searcher proposes it again, the same.
"""

from __future__ import annotations

import json
import os

import pyarrow.fs
import ray.cloudpickle as cloudpickle

from ganaug.files import is_remote, join, read_bytes, write_bytes

__all__ = ["SUPERSEDED", "recover_lost_trials", "set_aside_unlisted_trials"]

EXPERIMENT_STATE = "experiment_state-"   # Tune's TuneController.CKPT_FILE_TMPL
SEARCH_STATE = "search_gen_state-"       # Tune's SearchGenerator.CKPT_FILE_TMPL (a cloudpickle despite .json)
LIMITER = "name:ConcurrencyLimiter"      # the wrapper's state inside SearchGenerator's (SearchGenerator.save_to_dir)
UNFINISHED = ("PENDING", "RUNNING", "PAUSED")  # Tune's Trial statuses that --resume runs again (and ERROR)
SUPERSEDED = "superseded"  # where a deterministic search's --resume keeps the first runs of trials it runs again


def _filesystem(location: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """The filesystem that lists `location`'s folder (ganaug.files reads and writes single files only)."""
    if is_remote(location):
        return pyarrow.fs.FileSystem.from_uri(location)
    return pyarrow.fs.LocalFileSystem(), os.path.abspath(location)


def recover_lost_trials(experiment_dir: str) -> int:
    """Repair the newest saved search-generator state of the experiment at `experiment_dir` (a folder or a URI)
    where it counts more trials than exist (or fewer); return how many were lost.

    A trial exists when Tune's trial list holds it, or when its folder holds a reported result (Tune syncs a
    trial's folder itself, so a trial can finish, and be summarised, without reaching the saved list): the count
    becomes the number of those, and the concurrency limiter forgets the lost trials, which would otherwise hold
    their slots for ever. After the reverse kill (in the module docstring) the count rises to the trials that exist
    and the limiter takes on the list's unfinished trials it does not hold; nothing was lost then: it returns 0."""
    filesystem, path, names, trials = _saved_trials(experiment_dir)
    searches = sorted(name for name in names if name.startswith(SEARCH_STATE))
    if trials is None or not searches:
        return 0
    try:
        recorded = {trial["trial_id"]: trial["relative_logdir"] for trial in trials}
        unfinished = {trial["trial_id"] for trial in trials if trial.get("status") in UNFINISHED}
    except (KeyError, TypeError):  # a state file Tune cannot read either: its own message says so
        return 0
    listed = set(recorded.values())
    # Trial folders outside the list whose trial reported at least once (result.json holds one line per report).
    reported = [name for name, entry in names.items()
                if entry.type == pyarrow.fs.FileType.Directory and name not in listed
                and filesystem.get_file_info(f"{path}/{name}/result.json").size]
    search_location = join(experiment_dir, searches[-1])
    search = cloudpickle.loads(read_bytes(search_location) or b"")
    exist = len(recorded) + len(reported)
    lost = max(0, search["counter"] - exist)
    limiter = search.get(LIMITER)
    unheld = unfinished - limiter["live_trials"] if limiter is not None else set()
    if search["counter"] == exist and not unheld:
        return 0
    # Lost trials are created again; trials the count missed (the reverse kill) are not created a second time.
    search["counter"] = exist
    search["finished"] = search["finished"] and not lost
    if limiter is not None:
        live = {trial for trial in limiter["live_trials"] if trial in recorded} if lost else limiter["live_trials"]
        # A lost trial's slot is freed; an unfinished trial the limiter never handed out takes one.
        limiter["live_trials"] = live | unheld
        limiter["num_unfinished_live_trials"] = min(limiter["num_unfinished_live_trials"] + len(unheld),
                                                    len(limiter["live_trials"]))
    write_bytes(search_location, cloudpickle.dumps(search))  # whole: atomic locally, one object on a store
    return lost


def set_aside_unlisted_trials(experiment_dir: str) -> list[str]:
    """Move each trial folder of the experiment at `experiment_dir` (a folder or a URI) that Tune's newest saved trial
    list does not hold into its SUPERSEDED folder; return their names.

    For a deterministic search (ganaug.search.ordered), before --resume: such a trial started after Tune last saved
    its state, so the resumed search proposes it again, the same, and runs it again from the start; its first run
    left in place would be a second row of summary.csv (the results list every trial folder).
    """
    filesystem, path, names, trials = _saved_trials(experiment_dir)
    if trials is None:
        return []
    listed = {trial.get("relative_logdir") for trial in trials}
    unlisted = sorted(name for name, entry in names.items() if entry.type == pyarrow.fs.FileType.Directory
                      and name not in listed
                      and filesystem.get_file_info(f"{path}/{name}/params.json").type == pyarrow.fs.FileType.File)
    for name in unlisted:
        filesystem.create_dir(f"{path}/{SUPERSEDED}")
        source, target = f"{path}/{name}", f"{path}/{SUPERSEDED}/{name}"
        if filesystem.get_file_info(target).type != pyarrow.fs.FileType.NotFound:
            # Set aside before: a resumed driver on the same Ray session synced its staged copy of the trial's Tune
            # records (params.json, result.json) back up at the end (tune.search calls this again then).
            filesystem.delete_dir(source)
        elif is_remote(experiment_dir):  # object stores move files only
            pyarrow.fs.copy_files(source, target, source_filesystem=filesystem, destination_filesystem=filesystem)
            filesystem.delete_dir(source)
        else:
            filesystem.move(source, target)
    return unlisted


def _saved_trials(experiment_dir: str) -> tuple[pyarrow.fs.FileSystem, str, dict, list[dict] | None]:
    """The experiment folder's filesystem, path and entries by name, and the trials of Tune's newest saved trial list
    (None: there is none, or Tune cannot read it either: its own message says so)."""
    filesystem, path = _filesystem(experiment_dir)
    entries = filesystem.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    names = {entry.base_name: entry for entry in entries}
    states = sorted(name for name in names if name.startswith(EXPERIMENT_STATE))
    if not states:
        return filesystem, path, names, None
    try:
        state = json.loads(read_bytes(join(experiment_dir, states[-1])) or b"")
        return filesystem, path, names, [json.loads(trial_json) for trial_json, _ in state["trial_data"]]
    except (ValueError, KeyError, TypeError):
        return filesystem, path, names, None
