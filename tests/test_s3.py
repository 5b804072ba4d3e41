"""Searches on real S3: moto's S3 server on loopback stands in for AWS, reached through AWS_ENDPOINT_URL as
Ray Tune (pyarrow's S3FileSystem), boto3 and ganaug all read it. One search into the bucket is killed mid-way
and resumed from the bucket; evaluate and generate then read it by its s3:// URI; bad S3 storage exits 2."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from experiment_fixture import SPACE as TINY
from spaces import write_tiny_space

from ganaug.search.tune import JOURNAL_FILE, main

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "ganaug-test"
STORAGE = f"s3://{BUCKET}/runs"
EXPERIMENT = f"{STORAGE}/tiny"
NUM_SAMPLES = 4  # experiment_fixture.SPACE: 4 trials of 2 epochs on 30 digits per class
# ... each pretraining its GAN for one pass, so that the generator bank lives in the bucket too (one entry: the
# trials differ in labeling and classifier_lr only, neither of which is a GAN key).
SPACE = {**TINY, "fixed": {**TINY["fixed"], "gan_pretrain_epochs": 1}}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 with one bucket; the environment points every S3 client at it, and
    GANAUG_MIRROR at a temporary folder so the local mirrors start empty. (Not HOME: Ray keeps its auth token
    under ~/.ray, and a test process that already started Ray with the real HOME would hand a new GCS a token
    it cannot match.)"""
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
    import boto3

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                           "GANAUG_MIRROR": str(tmp_path_factory.mktemp("mirror"))}.items():
            patch.setenv(key, value)
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client
    server.stop()


def keys(client, prefix: str = "runs/tiny/") -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def read(client, key: str) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


@pytest.fixture(scope="module")
def resumed(s3, tmp_path_factory):
    """A search into the bucket whose driver is killed once the first trial has ended, then --resume'd."""
    tmp = tmp_path_factory.mktemp("s3search")
    space = write_tiny_space(tmp, "tiny", storage=STORAGE, **SPACE)
    command = [sys.executable, "-m", "ganaug.tune", str(space), "--num-cpus", "2"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.time() + 240
        # The journal reaches the bucket when the first trial ends (JournalUploader), long before the search does.
        while f"runs/tiny/{JOURNAL_FILE}" not in keys(s3) and time.time() < deadline:
            assert process.poll() is None, "the driver ended before a trial did"
            time.sleep(0.5)
        journal_before_kill = read(s3, f"runs/tiny/{JOURNAL_FILE}")
        summary_before_kill = "runs/tiny/summary.csv" in keys(s3)
        time.sleep(2)  # let Tune write its experiment state once more
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the driver and the local Ray it started
        process.wait()
    # As on a new head node: no local mirror, so the study can only continue from the bucket's journal.
    shutil.rmtree(os.environ["GANAUG_MIRROR"])
    assert main([str(space), "--resume", "--num-cpus", "2"]) == 0
    return {"journal_before_kill": journal_before_kill, "summary_before_kill": summary_before_kill,
            "space": space, "tmp": tmp}


def load_study(data: bytes, folder: Path) -> optuna.Study:
    path = folder / JOURNAL_FILE
    path.write_bytes(data)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    return optuna.load_study(study_name="tiny", storage=storage)


@pytest.mark.slow
def test_killed_search_resumes_from_the_bucket_with_every_output_there(s3, resumed, tmp_path):
    assert resumed["journal_before_kill"] and not resumed["summary_before_kill"]
    stored = keys(s3)
    for name in ("ganaug_experiment.yaml", "summary.csv", "best_policy.yaml", JOURNAL_FILE):
        assert f"runs/tiny/{name}" in stored, f"{name} did not reach the bucket"
    summary = pd.read_csv(io.BytesIO(read(s3, "runs/tiny/summary.csv")), dtype={"trial_id": str})
    assert len(summary) == NUM_SAMPLES  # num_samples honoured across the kill
    assert set(summary["status"]) <= {"complete", "pruned"}
    trials = {key.split("/")[2] for key in stored if key.endswith("/params.json")}
    assert len(trials) == NUM_SAMPLES
    for trial in trials:
        results = read(s3, f"runs/tiny/{trial}/result.json").decode().splitlines()
        assert results and "val_acc" in json.loads(results[-1])
        assert any(key.startswith(f"runs/tiny/{trial}/checkpoint_") for key in stored), f"{trial}: no checkpoint"
    policy = yaml.safe_load(read(s3, "runs/tiny/best_policy.yaml"))
    assert policy["trial_id"] in set(summary["trial_id"]) and "val_acc" in policy["metrics"]


@pytest.mark.slow
def test_the_generator_bank_is_in_the_bucket_and_shared(s3, resumed, tmp_path):
    # (pyarrow's create_dir leaves "folder/" marker objects: not entries)
    stored = [key for key in keys(s3) if key.startswith("runs/tiny/generators/") and not key.endswith("/")]
    entries = {key.split("/")[3] for key in stored}
    assert len(entries) == 1 and {f"runs/tiny/generators/{next(iter(entries))}/{name}" for name in
                                  ("generator.pt", "generator.yaml")} <= set(stored)
    info = yaml.safe_load(read(s3, f"runs/tiny/generators/{next(iter(entries))}/generator.yaml"))
    assert info["format"] == 1 and info["inputs"]["keys"]["gan_pretrain_epochs"] == 1
    trials = {key.split("/")[2] for key in keys(s3) if key.endswith("/result.json")}
    reused = [json.loads(read(s3, f"runs/tiny/{trial}/result.json").decode().splitlines()[-1]).get("generator_reused")
              for trial in trials]
    assert reused.count(1) >= len(trials) - 2  # at most the first two (side by side) trained it: it was one entry


@pytest.mark.slow
def test_the_bucket_journal_holds_the_whole_study_with_user_attrs(s3, resumed, tmp_path):
    before = load_study(resumed["journal_before_kill"], tmp_path)
    assert any(t.state.is_finished() for t in before.trials)  # uploaded as the first trial ended
    (tmp_path / "after").mkdir()
    study = load_study(read(s3, f"runs/tiny/{JOURNAL_FILE}"), tmp_path / "after")
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) >= NUM_SAMPLES
    # The study continued across the kill: the trials told before it are still there.
    assert {t.number for t in before.trials if t.state.is_finished()} <= {t.number for t in finished}
    for trial in finished:
        assert trial.user_attrs["status"] in ("complete", "pruned", "error", "diverged")
        assert trial.user_attrs["diverged"] == 0
    assert all("test_acc" in t.user_attrs for t in finished if t.user_attrs["status"] == "complete")


@pytest.mark.slow
def test_generate_and_evaluate_read_the_experiment_by_its_uri(s3, resumed, tmp_path, capsys):
    from ganaug.results.evaluate import main as evaluate
    from ganaug.results.generate import main as generate

    out = tmp_path / "synthetic.npz"
    assert generate([EXPERIMENT, "--per-class", "3", "--format", "npz", "--out", str(out)]) == 0
    assert np.load(out)["images"].shape[0] == 3 * 10
    assert evaluate([EXPERIMENT, "--seeds", "2", "--epochs", "1", "--num-cpus", "2"]) == 0
    stored = keys(s3)
    for name in ("evaluation.csv", "evaluation.md", "evaluation.png"):
        assert f"runs/tiny/{name}" in stored, f"{name} was not written back to the bucket"
    assert b"best_gan" in read(s3, "runs/tiny/evaluation.md")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # free once closed: nothing listens there


@pytest.mark.parametrize("problem", ["no_bucket", "no_endpoint"])
def test_unusable_s3_storage_exits_2_naming_the_uri(s3, tmp_path, capsys, monkeypatch, problem):
    storage = f"s3://{BUCKET}-missing/runs" if problem == "no_bucket" else STORAGE
    if problem == "no_endpoint":
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    space = write_tiny_space(tmp_path, "tiny", storage=storage, **SPACE)
    started = time.time()
    assert main([str(space)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and storage in error
    assert ("no bucket" if problem == "no_bucket" else "cannot reach") in error
    assert time.time() - started < 20  # a quick check, not the AWS SDK's retries
    from ganaug.results.evaluate import main as evaluate

    assert evaluate([f"{storage}/tiny"]) == 2
    assert storage in capsys.readouterr().err


@pytest.mark.parametrize("problem", ["a_file", "no_bucket"])
def test_an_unusable_s3_generator_bank_exits_2_before_ray(s3, tmp_path, capsys, problem):
    s3.put_object(Bucket=BUCKET, Key="banks/a_file", Body=b"an object where the bank's folder should be")
    bank = f"s3://{BUCKET}/banks/a_file" if problem == "a_file" else f"s3://{BUCKET}-missing/bank"
    space = write_tiny_space(tmp_path, "tiny", **{**SPACE, "experiment": {**SPACE["experiment"], "generators": bank}})
    assert main([str(space)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith(f"error: {space}: experiment.generators: ")
    assert f"{bank} is a file" in error if problem == "a_file" else f"no bucket '{BUCKET}-missing'" in error
    assert not (tmp_path / "results").exists()  # the local storage the search would have used: not left behind


@pytest.mark.slow
def test_optuna_dashboard_serves_the_study_from_the_journal(s3, resumed, tmp_path):
    dashboard = Path(sys.executable).with_name("optuna-dashboard")  # the console script of `.[dashboard]`
    if not dashboard.is_file():
        pytest.skip("optuna-dashboard is not installed (pip install -e '.[dashboard]')")
    journal = tmp_path / JOURNAL_FILE
    journal.write_bytes(read(s3, f"runs/tiny/{JOURNAL_FILE}"))
    port = _closed_port()
    server = subprocess.Popen([str(dashboard), str(journal), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}/api/studies"
        deadline = time.time() + 60
        while True:
            try:
                studies = json.load(urllib.request.urlopen(base, timeout=5))["study_summaries"]
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "optuna-dashboard did not start"
                time.sleep(0.5)
        (study,) = studies
        assert study["study_name"] == "tiny"
        detail = json.load(urllib.request.urlopen(f"{base}/{study['study_id']}", timeout=10))
        trials = detail["trials"]
        assert len(trials) >= NUM_SAMPLES
        assert {t["state"] for t in trials} <= {"Complete", "Pruned", "Fail"}
        assert any(t["intermediate_values"] for t in trials if t["state"] == "Pruned")
        assert all(t["intermediate_values"][-1]["step"] == 2 for t in trials if t["state"] == "Complete")
        assert all(any(a["key"] == "status" for a in t["user_attrs"]) for t in trials)
    finally:
        server.terminate()
        server.wait(timeout=30)
