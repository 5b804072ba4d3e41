"""`python -m ganaug.pipeline POLICY.yaml` (`ganaug pipeline`): rerun one policy, e.g. a search's best_policy.yaml,
without Ray: the policy's `config:` and `data:` sections, then trial.run with a TrialReporter into --out."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from ganaug.config import ConfigError, TrialConfig, adds_synthetic
from ganaug.data import attach_folders, load_data
from ganaug.errors import exit_code
from ganaug.trial.loop import run
from ganaug.trial.reporter import TrialReporter


def main(argv: list[str] | None = None, prog: str = "python -m ganaug.pipeline") -> int:
    parser = argparse.ArgumentParser(prog=prog,
                                     description="Train one augmentation policy (a best_policy.yaml) directly.")
    parser.add_argument("policy", help="YAML with `config:` (TrialConfig keys) and `data:` sections")
    parser.add_argument("--epochs", type=int, help="override the policy's epochs")
    parser.add_argument("--seed", type=int, help="override the policy's seed")
    parser.add_argument("--out", help="folder for metrics.jsonl, sample grids and TensorBoard events")
    args = parser.parse_args(argv)
    return exit_code(lambda: _train(args))


def _train(args: argparse.Namespace) -> None:
    """Read the policy file, apply the overrides and train it, reporting into --out."""
    try:
        policy = yaml.safe_load(Path(args.policy).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{args.policy}: cannot read the policy file ({str(error).splitlines()[0]})") from None
    if not isinstance(policy, dict) or "config" not in policy or "data" not in policy:
        raise ConfigError(f"{args.policy}: needs `config:` and `data:` sections (as in best_policy.yaml)")
    if not isinstance(policy["config"], dict):
        raise ConfigError(f"{args.policy}: config: expected a mapping of TrialConfig keys, "
                          f"got {type(policy['config']).__name__}")
    overrides = {k: v for k, v in {"epochs": args.epochs, "seed": args.seed}.items() if v is not None}
    cfg = TrialConfig.from_dict({**policy["config"], **overrides}, where=args.policy)
    # A policy drawing from a folder of images gets them beside the data, as its search did.
    data = attach_folders(load_data(policy["data"]),
                          [cfg.synthetic_folder] if adds_synthetic(cfg) and cfg.synthetic_source == "folder" else [])
    reporter = TrialReporter(args.out) if args.out else None
    try:
        final = run(cfg, data, reporter)
    finally:
        if reporter is not None:
            reporter.close()
    print({k: final[k] for k in ("val_acc", "test_acc") if k in final})


if __name__ == "__main__":
    raise SystemExit(main())
