"""The generator bank (trial.bank): a GAN pretrained once and loaded by every trial that would train the same one.

Loading gives exactly the metrics training it would; a corrupt, truncated or older entry is never loaded; two
trials that need one key train it once and a trial that dies while training one lets another take over; policies
whose GAN differs never share an entry; evaluate finds the search's generator for the search's seed."""

import dataclasses
import math
import threading
import time

import pandas as pd
import pytest
import torch
import yaml
from spaces import write_tiny_space

from ganaug.config import TrialConfig, keys_with
from ganaug.data import load_data
from ganaug.metrics import BY_NAME
from ganaug.trial import GeneratorBank, run
from ganaug.trial.bank import GENERATOR_KEYS, INFO_FILE, STATE_FILE

POLICY = dict(synthetic_ratio=0.5, gan_pretrain_epochs=2, gan_freeze=True, epochs=3, batch_size=32,
              classifier_width=0.25, gan_width=0.25, cas_epochs=1, checkpoint_every=1)
TIMING = {"epoch_seconds", "images_per_second", "gan_pretrain_seconds", "generator_reused", "generator_train_seconds"}


@pytest.fixture(scope="module")
def digits():
    return load_data({"name": "digits", "samples_per_class": 40, "val_fraction": 0.25})


def rows_of(cfg, data, bank, checkpoint=None):
    rows = []
    run(cfg, data, lambda metrics, **_: rows.append(metrics), bank=bank, checkpoint=checkpoint)
    return rows


def classifier_epochs(rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows if row["epoch"] > 0]


@pytest.mark.parametrize("family", ["acgan", "ali", "translation"])
def test_a_trial_that_loads_its_generator_reports_what_training_it_would(digits, tmp_path, family):
    cfg = TrialConfig(**POLICY, gan=family, gan_arch="dcgan" if family == "translation" else "mlp")
    trained = rows_of(cfg, digits, GeneratorBank(tmp_path / "bank", owner="first"))
    reused = rows_of(cfg, digits, GeneratorBank(tmp_path / "bank", owner="second"))
    assert [row["epoch"] for row in trained] == [0, 0, 1, 2, 3] and [row["epoch"] for row in reused] == [1, 2, 3]
    assert {key for row in trained for key in row} <= set(BY_NAME)  # every metric reported is declared (METRICS)
    assert classifier_epochs(trained) == classifier_epochs(reused)  # epoch by epoch, every metric
    assert {row["generator_reused"] for row in trained[2:]} == {0}
    assert {row["generator_reused"] for row in reused} == {1}
    assert reused[-1]["gan_pretrain_seconds"] == 0 and reused[-1]["generator_train_seconds"] > 0
    (entry,) = list((tmp_path / "bank").iterdir())
    info = yaml.safe_load((entry / INFO_FILE).read_text())
    assert info["key"] == entry.name == reused[-1]["generator_key"] and info["trained_by"] == "first"
    assert {"synthetic_diversity", "frechet_distance", "cas", "cas_ratio"} <= set(info["quality"])
    # digits is balanced: every class is many-shot, so the entry holds that group's CAS and no nan of the others.
    assert info["quality"]["cas_many"] == pytest.approx(reused[-1]["cas_many"]) and "cas_few" not in info["quality"]
    assert info["inputs"]["keys"]["gan"] == family


def test_a_bank_without_pretraining_or_without_a_gan_is_not_used(digits, tmp_path):
    bank = GeneratorBank(tmp_path / "bank")
    rows_of(TrialConfig(**{**POLICY, "gan_pretrain_epochs": 0, "gan_freeze": False}), digits, bank)
    rows_of(TrialConfig(epochs=1, classifier_width=0.25, cas_epochs=0), digits, bank)
    assert not (tmp_path / "bank").exists()


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "older format"])
def test_a_damaged_entry_is_reported_once_retrained_and_replaced(digits, tmp_path, capfd, damage):
    cfg = TrialConfig(**POLICY)
    first = rows_of(cfg, digits, GeneratorBank(tmp_path / "bank"))
    (entry,) = list((tmp_path / "bank").iterdir())
    state, info = entry / STATE_FILE, entry / INFO_FILE
    if damage == "corrupt":
        raw = bytearray(state.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        state.write_bytes(bytes(raw))
    elif damage == "truncated":
        state.write_bytes(state.read_bytes()[:1000])
    else:
        info.write_text(info.read_text().replace("format: 1", "format: 0", 1))
    capfd.readouterr()
    again = rows_of(cfg, digits, GeneratorBank(tmp_path / "bank"))
    message = capfd.readouterr().err
    assert message.count(str(state)) == 1 and "retrained and replaced" in message
    assert [row["epoch"] for row in again][:2] == [0, 0]  # it pretrained again instead of loading the damage
    assert classifier_epochs(again) == classifier_epochs(first)
    reloaded = GeneratorBank(tmp_path / "bank").load(entry.name)
    assert reloaded is not None and yaml.safe_load(info.read_text())["format"] == 1


def _changed(name: str, value):
    """Another valid value of a generator key."""
    if isinstance(value, bool):
        return not value
    choices = {"gan": "cgan", "gan_arch": "dcgan", "gan_loss": "hinge", "d_mix_schedule": "hybrid",
               "d_minibatch": "stddev", "diffaugment": "translation"}
    if name in choices:
        return choices[name]
    if isinstance(value, int):
        return value + 1
    return value * 0.5 if value else 0.1


def test_policies_whose_gan_keys_differ_never_share_an_entry(digits):
    """Change one generator key (the policy using it), get another key; change a classifier key, keep it."""
    device = torch.device("cpu")
    base = dict(synthetic_ratio=0.5, gan_pretrain_epochs=1)
    families = {"ali_": {"gan": "ali"}, "cycle": {"gan": "translation"}, "identity": {"gan": "translation"},
                "predictor": {"gan": "acgan", "gan_conditions": "x"}, "gan_conditions": {"gan": "acgan"},
                "d_label_smoothing": {"gan_loss": "bce"}}
    for name in GENERATOR_KEYS:
        context = next((keys for prefix, keys in families.items() if name.startswith(prefix)), {})
        if name in ("gan_conditions", "predictor_weight"):
            continue  # needs an attributes.csv: covered by tests/test_conditions.py's trainers, not by the key
        cfg = TrialConfig(**base, **context)
        other = cfg.replace(**{name: _changed(name, getattr(cfg, name))})
        keys = {GeneratorBank.key_of(GeneratorBank.key_inputs(config, digits, device, False))
                for config in (cfg, other)}
        assert len(keys) == 2, name
    cfg = TrialConfig(**base)
    same = [cfg.replace(classifier="cnn"), cfg.replace(classifier_lr=0.01), cfg.replace(labeling="lsro"),
            cfg.replace(epochs=7), cfg.replace(gan_freeze=True), cfg.replace(ali_epochs=5)]  # ali_: another family's
    keys = {GeneratorBank.key_of(GeneratorBank.key_inputs(config, digits, device, False)) for config in [cfg, *same]}
    assert len(keys) == 1
    # Another training split, another precision: another generator.
    fewer = dataclasses.replace(digits, train_x=digits.train_x[:-1], train_y=digits.train_y[:-1],
                                train_attributes=digits.train_attributes[:-1])
    assert GeneratorBank.key_inputs(cfg, fewer, device, False)["data"] != \
        GeneratorBank.key_inputs(cfg, digits, device, False)["data"]
    assert GeneratorBank.key_of(GeneratorBank.key_inputs(cfg, digits, device, True)) not in keys


@pytest.fixture()
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_a_trial_killed_while_training_an_entry_lets_the_other_train_it(digits, tmp_path, local_ray):
    """A claims the key and dies (no heartbeat): B waits while A's claim is fresh, then trains the entry itself."""
    from ganaug.cluster import bank_coordinator

    coordinator = bank_coordinator("killed-claim", stale_seconds=3)
    assert coordinator.claim("some-key", "A")  # A starts to pretrain, then is killed: it never beats again
    assert not coordinator.claim("some-key", "B")
    cfg = TrialConfig(**POLICY)
    key = GeneratorBank.key_of(GeneratorBank.key_inputs(cfg, digits, torch.device("cpu"), False))
    assert coordinator.claim(key, "A")
    started = time.monotonic()
    rows = rows_of(cfg, digits, GeneratorBank(tmp_path / "bank", coordinator, owner="B"))
    assert time.monotonic() - started >= 3  # it waited for A's claim to go stale ...
    assert [row["epoch"] for row in rows][:2] == [0, 0] and rows[-1]["generator_reused"] == 0  # ... then trained
    assert (tmp_path / "bank" / key / STATE_FILE).is_file()
    # A live trainer's heartbeat keeps its claim: B cannot take it while A beats.
    assert coordinator.claim("live", "A")
    beating = threading.Event()

    def beat():
        while not beating.is_set():
            coordinator.heartbeat("live", "A")
            time.sleep(0.5)
    thread = threading.Thread(target=beat)
    thread.start()
    try:
        time.sleep(4)
        assert not coordinator.claim("live", "B")
    finally:
        beating.set()
        thread.join()
    coordinator.release("live", "A")
    assert coordinator.claim("live", "B")


def test_an_entry_stored_while_a_trial_claims_its_key_is_loaded_not_trained_again(digits, tmp_path):
    """The trainer stores its entry and releases its claim between a waiting trial's look and its claim (the race
    CI once hit: 1 of 2 waiting trials trained its generator again): the waiter loads the entry and gives the claim
    back instead of training it a second time."""
    cfg = TrialConfig(**POLICY)
    rows_of(cfg, digits, GeneratorBank(tmp_path / "trained"))
    (entry,) = list((tmp_path / "trained").iterdir())
    calls = []

    class TrainerFinishesDuringTheClaim:
        def claim(self, key, owner):
            calls.append(("claim", key, owner))
            target = tmp_path / "bank" / key
            if not target.exists():  # the trainer stores its entry just now, then releases its claim
                target.mkdir(parents=True)
                for name in (STATE_FILE, INFO_FILE):
                    (target / name).write_bytes((entry / name).read_bytes())
            return True

        def heartbeat(self, key, owner):
            calls.append(("heartbeat", key, owner))

        def release(self, key, owner):
            calls.append(("release", key, owner))

    rows = rows_of(cfg, digits, GeneratorBank(tmp_path / "bank", TrainerFinishesDuringTheClaim(), owner="waiter"))
    assert [row["epoch"] for row in rows] == [1, 2, 3] and {row["generator_reused"] for row in rows} == {1}
    assert [call[0] for call in calls] == ["claim", "release"] and calls[0][1] == entry.name


@pytest.mark.slow
def test_two_concurrent_trials_train_one_generator_and_evaluate_reuses_it(tmp_path):
    """A real 2-trial search whose trials share every GAN key: one entry, trained once (the other trial waited and
    loaded it); then evaluate --seeds 2 loads the search's generator for seed 0 and pretrains seed 1's."""
    from ganaug.results.evaluate import main as evaluate
    from ganaug.search import main as search

    space = write_tiny_space(tmp_path, experiment={"num_samples": 2, "baselines_first": False},
                             data={"samples_per_class": 30},
                             fixed={"synthetic_ratio": 0.5, "gan_pretrain_epochs": 2, "gan_freeze": True},
                             search={"classifier_lr": {"loguniform": [3.0e-4, 3.0e-3]}})
    assert search([str(space), "--num-cpus", "2"]) == 0
    experiment = tmp_path / "results" / "tiny"
    entries = list((experiment / "generators").iterdir())
    assert len(entries) == 1
    summary = pd.read_csv(experiment / "summary.csv")
    assert len(summary) == 2
    reused = [pd.read_json(f"{path}/result.json", lines=True).iloc[-1]["generator_reused"] for path in summary["path"]]
    assert sorted(reused) == [0, 1]  # trained once
    assert evaluate([str(experiment), "--seeds", "2", "--num-cpus", "2"]) == 0
    runs = pd.read_csv(experiment / "evaluation.csv")
    gan_runs = runs[runs["generator_key"].fillna("") != ""]
    by_seed = dict(zip(gan_runs["seed"], gan_runs["generator_reused"]))
    assert by_seed[0] == 1 and len(list((experiment / "generators").iterdir())) == 2  # seed 1's entry is new
    assert "## Generator bank" in (experiment / "evaluation.md").read_text()
    assert all(math.isfinite(value) for value in gan_runs["test_acc"])


def test_a_trial_that_raises_while_pretraining_lets_the_waiting_trial_train_at_once(digits, tmp_path):
    """A claims the key and raises in its first pretraining pass; B, waiting for A's entry, takes the key over at its
    next look (every POLL_SECONDS), not after the minute a silent claim takes to go stale, and trains the entry."""
    from ganaug.trial.bank import POLL_SECONDS, LocalCoordinator

    b_waits = threading.Event()

    class Coordinator(LocalCoordinator):
        def claim(self, key, owner):
            granted = super().claim(key, owner)
            if owner == "B" and not granted:
                b_waits.set()
            return granted

    coordinator, cfg, events, rows = Coordinator(stale_seconds=60), TrialConfig(**POLICY), {}, []

    def a_report(metrics, **_):
        assert b_waits.wait(30)
        events["a_raised"] = time.monotonic()
        raise RuntimeError("trial A fails while it pretrains")

    def run_a():
        with pytest.raises(RuntimeError, match="trial A fails"):
            run(cfg, digits, a_report, bank=GeneratorBank(tmp_path / "bank", coordinator, owner="A"))

    def b_report(metrics, **_):
        events.setdefault("b_first_pass", time.monotonic())
        rows.append(metrics)

    a = threading.Thread(target=run_a)
    a.start()
    for _ in range(300):  # B starts once A holds the claim
        if coordinator.claims:
            break
        time.sleep(0.1)
    b = threading.Thread(target=lambda: run(cfg, digits, b_report,
                                            bank=GeneratorBank(tmp_path / "bank", coordinator, owner="B")))
    b.start()
    a.join(60)
    b.join(120)
    assert not a.is_alive() and not b.is_alive()
    assert [row["epoch"] for row in rows] == [0, 0, 1, 2, 3] and rows[-1]["generator_reused"] == 0  # B trained it
    assert events["b_first_pass"] - events["a_raised"] < POLL_SECONDS + 20  # not the 60-s staleness timeout
    assert not coordinator.claims  # B released its claim once it had stored the entry
    assert (tmp_path / "bank" / rows[-1]["generator_key"] / STATE_FILE).is_file()


class RecordingConfig(TrialConfig):
    """A TrialConfig that notes every key read while `recording` is on."""

    recording = False
    touched: set[str] = set()

    def __getattribute__(self, name):
        if RecordingConfig.recording and name in KEYS:
            RecordingConfig.touched.add(name)
        return object.__getattribute__(self, name)

    def to_dict(self):
        """A snapshot of every key (a checkpoint's config, the bank key's inputs) acts on none of them."""
        recording, RecordingConfig.recording = RecordingConfig.recording, False
        try:
            return super().to_dict()
        finally:
            RecordingConfig.recording = recording


KEYS = set(TrialConfig.keys())
GENERATORS = {  # every family, and the GAN keys that take another code path
    "acgan": dict(gan="acgan", g_ema=0.99, diffaugment="color,translation,cutout", d_minibatch="stddev", d_steps=2,
                  d_mix_schedule="hybrid", d_label_smoothing=0.1, gan_steps_per_batch=2, acgan_fake_class_loss=False),
    "cgan": dict(gan="cgan", gan_arch="dcgan", gan_loss="hinge", d_spectral_norm=True, d_minibatch="discrimination"),
    "ali": dict(gan="ali", ali_epochs=1, ali_mask_encoded=False),
    "translation": dict(gan="translation", gan_arch="dcgan", identity_weight=1.0),
    "conditions": dict(gan="acgan", gan_conditions="level"),
}


@pytest.mark.parametrize("family", GENERATORS)
def test_generator_pretraining_reads_only_keys_of_the_bank_key(digits, tmp_path, family):
    """Build and pretrain a GAN the way a trial does, noting every config key the code reads: each is one that
    decides the generator (part of the bank's key), or one of the run keys that change where and how long a trial runs
    and what it records, not what it learns. A key read here but in neither would let the bank hand a trial a
    generator trained with another value of it."""
    from test_conditions import write_attribute_folder

    from ganaug.trial.loop import build_state
    from ganaug.trial.measure import PassMetrics
    from ganaug.trial.pretraining import pretrain_generator, seeded_gan
    from ganaug.trial.runtime import Runtime

    data = load_data({"name": "imagefolder", "root": str(write_attribute_folder(tmp_path / "images")),
                      "val_fraction": 0.2}) if family == "conditions" else digits
    cfg = RecordingConfig(**{**POLICY, "gan_pretrain_epochs": 2, **GENERATORS[family]})
    runtime = Runtime.of(cfg)
    state = build_state(cfg, data, runtime)  # the classifier: read here, outside the generator's code path
    measure = PassMetrics(cfg, data, state, runtime)
    RecordingConfig.touched = set()
    RecordingConfig.recording = True
    try:
        state.gan = seeded_gan(cfg, data.spec, data, runtime)
        pretrain_generator(cfg, state, data.pretraining(), runtime, measure, lambda metrics, **_: None,
                           GeneratorBank(tmp_path / "bank"))
    finally:
        RecordingConfig.recording = False
    allowed = set(GENERATOR_KEYS) | set(keys_with("run"))
    assert RecordingConfig.touched - allowed == set()
    assert {"gan", "gan_lr", "batch_size", "seed"} <= RecordingConfig.touched  # the recording sees the reads
