"""The cluster path: cluster.yaml passes Ray's own autoscaler validation, and a search runs across Ray nodes.

A local multi-node Ray cluster (one process tree per node, each node with its own temp folder, as on
separate machines) stands in for `ray up cluster.yaml`: its head advertises no CPU, like cluster.yaml's
head, so the tests see where Ray puts the trials, whether a GPU share packs trials onto one GPU, and what
reaches the storage folder. Another test joins an already running, token-protected cluster by --address,
as `ray exec ... --address` does on the head. No GPU is needed: GPUs here are Ray's logical resources.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"
VARIANT_PREFIX = "#| "  # marks the lines of the commented on-premise variant in cluster.yaml
SMOKE_TRIALS = 2  # SearchSpec.smoke(): 2 trials of 2 epochs, both running at once


# ----------------------------------------------------------------------------------------------------------
# cluster.yaml: Ray's schema, a broken copy, the on-premise variant, and the secure-by-default settings.

def ray_validate(config: dict) -> dict:
    """What `ray up` does to a config before it touches the cloud: fill defaults, then Ray's schema check."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def cluster_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def on_premise_config() -> dict:
    """cluster.yaml edited as its on-premise section says: node types dropped, provider and auth replaced."""
    lines = [line[len(VARIANT_PREFIX):] for line in CLUSTER_YAML.read_text().splitlines()
             if line.startswith(VARIANT_PREFIX)]
    variant = yaml.safe_load("\n".join(lines))
    dropped = ("available_node_types", "head_node_type")
    config = {key: value for key, value in cluster_config().items() if key not in dropped}
    return {**config, **variant}


def test_cluster_yaml_passes_rays_validation():
    prepared = ray_validate(cluster_config())
    node_types = prepared["available_node_types"]
    assert prepared["provider"]["type"] == "aws"
    assert set(node_types) == {"head", "gpu_1x", "gpu_4x"}
    assert prepared["head_node_type"] == "head"


def test_on_premise_variant_passes_rays_validation():
    config = on_premise_config()
    assert set(config) >= {"provider", "auth"} and config["provider"]["type"] == "local"
    prepared = ray_validate(config)
    assert prepared["provider"]["worker_ips"]  # Ray's own local-provider preparation accepted it


BREAKAGES = {  # one broken copy of cluster.yaml per way a hand edit can go wrong
    "misspelt top-level key": lambda c: c.update(idle_timeout_minute=c.pop("idle_timeout_minutes")),
    "fractional GPU as a node resource": lambda c: c["available_node_types"]["gpu_1x"]["resources"].update(
        GPU=0.5),
    "unknown key in a node type": lambda c: c["available_node_types"]["gpu_4x"].update(max_worker=3),
    "head type that does not exist": lambda c: c.update(head_node_type="cpu_head"),
    "min_workers above the cluster's max_workers": lambda c: c["available_node_types"]["gpu_1x"].update(
        min_workers=c["max_workers"] + 1),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_broken_copy_fails_rays_validation(breakage):
    config = cluster_config()
    ray_validate(config)  # the intact file passes, so the failure below is the edit's
    BREAKAGES[breakage](config)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        ray_validate(config)


def test_cluster_yaml_is_secure_by_default():
    config = cluster_config()
    node_types = config["available_node_types"]
    head_start = " ".join(config["head_start_ray_commands"])
    commands = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    starts = [command for command in commands if "ray start" in command]
    # No trial on the head: no CPU advertised, by node type (AWS) and by flag (on-premise too).
    assert node_types[config["head_node_type"]]["resources"] == {"CPU": 0}
    assert "--num-cpus=0" in head_start
    # The dashboard only on the head's localhost (reached through `ray dashboard`'s SSH tunnel); nothing
    # anywhere bound to or opened for all addresses.
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in json.dumps(config)
    # Every Ray process demands the token; the token comes from a file copied over SSH.
    assert starts and all("RAY_AUTH_MODE=token" in command for command in starts)
    assert "~/.ray/auth_token" in config["file_mounts"]
    # Ray's auto-created security group opens SSH to 0.0.0.0/0, so every node type names its own group.
    assert "security_group" not in config["provider"]
    assert all(t["node_config"].get("SecurityGroupIds") for t in node_types.values())


def test_worker_types_scale_from_zero_and_reach_storage():
    config = cluster_config()
    workers = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
    assert sorted(t["resources"]["GPU"] for t in workers) == [1, 4]  # a 1-GPU and a 4-GPU type
    for worker in workers:
        assert worker["min_workers"] == 0 and 0 < worker["max_workers"] <= config["max_workers"]
        # Trials write checkpoints straight to S3, so workers need an instance profile of their own.
        assert "instance-profile/" in worker["node_config"]["IamInstanceProfile"]["Arn"]
    assert config["idle_timeout_minutes"] > 0


def test_file_mounts_carry_what_the_install_needs():
    mounts = cluster_config()["file_mounts"]
    local = {remote: path for remote, path in mounts.items() if not path.startswith("~")}
    for path in local.values():  # relative to the repository root, where `ray up` runs
        assert (ROOT / path).exists(), f"cluster.yaml mounts {path}, which the repository lacks"
    readme = re.search(r'^readme\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    for needed in ("ganaug", "pyproject.toml", readme, "LICENSE", "search_spaces"):
        assert f"~/ganaug/{needed}" in local, f"cluster.yaml must mount {needed}: pip install -e needs it"
    setup = " ".join(cluster_config()["setup_commands"])
    assert "pip install -q -e ~/ganaug" in setup


# ----------------------------------------------------------------------------------------------------------
# Helpers shared by the searches below.

def first_result(trial: Path) -> dict:
    """The first line of a trial's result.json in storage (written by Tune's driver)."""
    return json.loads((trial / "result.json").read_text().splitlines()[0])


# ----------------------------------------------------------------------------------------------------------
# Joining a cluster that is already running, with token authentication on, by --address.

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_head(env: dict, temp_dir: Path):
    """`ray start --head --block` on 127.0.0.1 with ports of its own. Ends exactly this head, never with
    `ray stop`, which would end every Ray on the machine, other tests' included."""
    port = free_port()
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
               "--node-ip-address=127.0.0.1", f"--port={port}", f"--ray-client-server-port={free_port()}",
               f"--dashboard-agent-listen-port={free_port()}", "--num-cpus=2", "--include-dashboard=false",
               f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    log = temp_dir.parent / "head.log"
    with open(log, "w") as out:
        head = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not (temp_dir / "session_latest" / "logs" / "raylet.out").exists() or not _accepts(port):
            assert head.poll() is None, f"ray start --head exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"ray start --head not up in 90 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        # --block makes this process the owner of the head's processes: SIGTERM ends them all.
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_search_joins_a_running_cluster_by_address(tmp_path):
    # As cluster.yaml sets it up: every process demands the token. It comes from the environment here
    # (RAY_AUTH_TOKEN), from ~/.ray/auth_token on the cluster; the user's own token file is never touched.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_ADDRESS", None)
    temp_dir = Path(tempfile.mkdtemp(prefix="ganaug-ray-", dir="/tmp")) / "ray"
    storage = tmp_path / "results"
    try:
        with running_head(env, temp_dir) as address:
            search = subprocess.run(
                [sys.executable, "-m", "ganaug.tune", str(QUICKSTART), "--smoke-test",
                 "--storage", str(storage), "--address", address],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
            logs = {path.name for path in (temp_dir / "session_latest" / "logs").iterdir()}
    finally:
        shutil.rmtree(temp_dir.parent, ignore_errors=True)
    output = search.stdout + search.stderr
    assert search.returncode == 0, output[-4000:]
    assert "Started a local Ray instance" not in output  # it joined; it did not start a Ray of its own
    experiment = storage / "quickstart-smoke"
    summary = pd.read_csv(experiment / "summary.csv", dtype={"trial_id": str})
    trials = [path for path in experiment.iterdir() if (path / "result.json").is_file()]
    assert len(summary) == len(trials) == SMOKE_TRIALS
    # Each trial's process was a worker of the running head (Ray names worker logs by process id).
    for trial in trials:
        pid = first_result(trial)["pid"]
        assert any(name.startswith("python-core-worker-") and name.endswith(f"_{pid}.log") for name in logs)


# ----------------------------------------------------------------------------------------------------------
# A local multi-node cluster: head with no CPU, two 1-CPU worker nodes, each node with its own temp folder.

@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # the driver must join this cluster, not a Ray an earlier test left running
        ray.shutdown()
    # Short folder: Ray's unix sockets live under it and must fit the 107-character limit.
    base = Path(tempfile.mkdtemp(prefix="ganaug-ray-", dir="/tmp"))
    nodes = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "temp_dir": str(base / "head")})
    workers = [nodes.add_node(num_cpus=1, temp_dir=str(base / f"worker{i}")) for i in (1, 2)]
    nodes.wait_for_nodes()
    ray.init(address=nodes.address)
    try:
        yield SimpleNamespace(nodes=nodes, base=base, head=nodes.head_node.node_id,
                              workers={w.node_id for w in workers})
    finally:
        ray.shutdown()
        nodes.shutdown()
        shutil.rmtree(base, ignore_errors=True)


def run_search(cluster, folder: Path, *, cpu: float, gpu: float, uri: bool = False) -> SimpleNamespace:
    """A --smoke-test search of quickstart.yaml (at these per-trial resources) on the connected cluster,
    storing into folder/results, named by path or (uri=True) by file:// URI, as s3:// storage is named."""
    from ray._private.state import actors

    from ganaug.search.tune import main

    space = yaml.safe_load(QUICKSTART.read_text())
    space["experiment"]["resources"] = {"cpu": cpu, "gpu": gpu}
    space_file = folder / "space.yaml"
    space_file.write_text(yaml.safe_dump(space))
    storage = folder / "results"
    named = storage.as_uri() if uri else str(storage)
    assert main([str(space_file), "--smoke-test", "--storage", named]) == 0
    experiment = next(path for path in storage.iterdir() if path.is_dir())
    trials = sorted(path for path in experiment.iterdir() if (path / "params.json").is_file())
    # Tune's result.json gives each trial's process id; Ray's actor table says on which node and when that
    # process ran (all nodes share one IP here, so node_ip cannot tell them apart).
    pids = {trial.name: first_result(trial)["pid"] for trial in trials}
    by_pid = {a["Pid"]: a for a in actors().values() if a["Pid"] in pids.values()}
    placed = {name: by_pid[pid] for name, pid in pids.items()}
    return SimpleNamespace(experiment=experiment, trials=trials, placed=placed)


@pytest.fixture(scope="module")
def spread_search(cluster, tmp_path_factory):
    """One CPU per trial on 1-CPU workers: the two trials can only run on two different nodes."""
    return run_search(cluster, tmp_path_factory.mktemp("spread"), cpu=1, gpu=0)


@pytest.mark.slow
def test_trials_run_on_worker_nodes_never_the_head(cluster, spread_search):
    nodes = {actor["Address"]["NodeID"] for actor in spread_search.placed.values()}
    assert len(spread_search.placed) == SMOKE_TRIALS
    assert cluster.head not in nodes
    assert nodes <= cluster.workers and len(nodes) == 2


@pytest.mark.slow
def test_every_trial_from_every_node_reaches_storage(spread_search):
    summary = pd.read_csv(spread_search.experiment / "summary.csv", dtype={"trial_id": str})
    assert len(spread_search.trials) == SMOKE_TRIALS
    assert sorted(summary["trial_id"]) == sorted(first_result(t)["trial_id"] for t in spread_search.trials)
    for trial in spread_search.trials:
        assert (trial / "result.json").read_text().strip(), f"{trial.name}: empty result.json"
    # Checkpoints land in storage too, so a trial can resume on whichever node Ray gives it next.
    assert any(any(trial.glob("checkpoint_*/*")) for trial in spread_search.trials)
    assert (spread_search.experiment / "best_policy.yaml").is_file()


@pytest.mark.slow
def test_trial_artifacts_reach_storage_from_worker_nodes(spread_search):
    for trial in spread_search.trials:
        assert (trial / "metrics.jsonl").is_file(), f"{trial.name}: TrialReporter's metrics.jsonl is missing"


@pytest.mark.slow
def test_gpu_share_packs_trials_onto_one_gpu(cluster, tmp_path):
    """gpu: 0.5 puts both trials on the one (logical) GPU at the same time, and never on a CPU-only node."""
    gpu_node = cluster.nodes.add_node(num_cpus=2, num_gpus=1, temp_dir=str(cluster.base / "gpu"))
    cluster.nodes.wait_for_nodes()
    try:
        search = run_search(cluster, tmp_path, cpu=1, gpu=0.5)
    finally:
        cluster.nodes.remove_node(gpu_node)
    actors = list(search.placed.values())
    assert len(actors) == SMOKE_TRIALS
    assert {actor["Address"]["NodeID"] for actor in actors} == {gpu_node.node_id}
    started, ended = max(a["StartTime"] for a in actors), min(a["EndTime"] for a in actors)
    assert started < ended, "the two trials ran one after the other: a 0.5 GPU share did not pack them"


@pytest.mark.slow
def test_uri_storage_receives_the_search_outputs(cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a URI misread as a local path would become a folder here, not in the repo
    search = run_search(cluster, tmp_path, cpu=1, gpu=0, uri=True)
    for name in ("ganaug_experiment.yaml", "summary.csv", "best_policy.yaml"):
        assert (search.experiment / name).is_file(), f"{name} did not reach the storage URI"
    assert not (tmp_path / "file:").exists()
