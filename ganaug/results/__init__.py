"""What a search leaves: experiment folders (local or s3://, read into pandas; summary.csv, best_policy.yaml),
`ganaug evaluate` (the best policies retrained over seeds), its statistics and report, and `ganaug generate`.

    from ganaug.results import load_experiment
    experiment = load_experiment("~/ganaug_results/quickstart")
    experiment.trials, experiment.curves, experiment.best()
"""

from ganaug.results.evaluate import EVALUATION_CSV
from ganaug.results.experiment import (
    BEST_POLICY_FILE,
    EXPERIMENT_FILE,
    JOURNAL_FILE,
    SUMMARY_FILE,
    Experiment,
    ResultsError,
    load_experiment,
    next_steps,
    read_curve,
    save_experiment_meta,
    write_outputs,
)
from ganaug.results.generate import GenerateError
from ganaug.results.policies import BEST_GAN, BEST_NO_GAN, ORACLE
from ganaug.results.report import (
    control_line,
    headline,
    markdown_report,
    plot_differences,
    plot_means,
    plot_question,
    question_policies,
    strongest_line,
    strongest_no_gan,
)
from ganaug.results.selection import EvaluationError, policy_configs
from ganaug.results.stats import (
    ablation_differences,
    gain_recovery,
    paired_differences,
    per_class_deltas,
    summarize,
    t_interval,
)
from ganaug.results.storage import StorageError, check_reachable, download, is_uri, mirror_of, upload

__all__ = ["BEST_GAN", "BEST_NO_GAN", "BEST_POLICY_FILE", "EVALUATION_CSV", "EXPERIMENT_FILE", "EvaluationError",
           "Experiment", "GenerateError", "JOURNAL_FILE", "ORACLE", "ResultsError", "SUMMARY_FILE", "StorageError",
           "ablation_differences", "check_reachable", "control_line", "download", "gain_recovery", "headline", "is_uri",
           "load_experiment", "markdown_report", "mirror_of", "next_steps", "paired_differences", "per_class_deltas",
           "plot_differences", "plot_means", "plot_question", "policy_configs", "question_policies", "read_curve",
           "save_experiment_meta", "strongest_line", "strongest_no_gan", "summarize", "t_interval", "upload",
           "write_outputs"]
