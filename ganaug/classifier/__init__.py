"""The classifier side: CLASSIFIERS (built-in, torchvision:NAME, package.module:factory) and build_classifier;
LABELERS (how synthetic rows are labelled) and the EMA teacher; accuracy on a split (score) and the classification
accuracy score of a generator (CAS).

    from ganaug.classifier import LABELERS, build_classifier, score
    model = build_classifier("cnn", data.spec, LABELERS["pseudo"].num_outputs(10))
    score(model, data.val_x, data.val_y, LABELERS["pseudo"], 10)["acc"]
"""

from ganaug.classifier.accuracy import (
    SHOT_GROUPS,
    accuracy,
    balanced_accuracy,
    group_accuracies,
    per_class_accuracy,
    predict,
    score,
    shot_groups,
    synthetic_agreement,
    topk_accuracy,
)
from ganaug.classifier.cas import cas_report, classification_accuracy_score, real_accuracy_score
from ganaug.classifier.labeling import (
    CLASS_BALANCES,
    LABELERS,
    ClassBalance,
    Labeler,
    Teacher,
    balanced_cross_entropy,
    class_balance_loss,
    distill_target,
    effective_number_weights,
    keep_best_candidates,
    logit_adjustment,
)
from ganaug.classifier.models import (
    CLASSIFIERS,
    SYNTHETIC_BN,
    ClassifierError,
    SplitBatchNorm,
    build_classifier,
    check_classifier,
    resolve_classifier,
    synthetic_rows,
)
from ganaug.classifier.recipe import OPTIMIZERS, SCHEDULES, LearningRate, build_optimizer, lr_factor

__all__ = ["CLASSIFIERS", "CLASS_BALANCES", "ClassBalance", "ClassifierError", "LABELERS", "Labeler", "LearningRate",
           "OPTIMIZERS", "SCHEDULES", "SHOT_GROUPS", "SYNTHETIC_BN", "SplitBatchNorm", "Teacher", "accuracy",
           "balanced_accuracy", "balanced_cross_entropy", "build_classifier", "build_optimizer", "cas_report",
           "check_classifier", "class_balance_loss", "classification_accuracy_score", "distill_target",
           "effective_number_weights", "group_accuracies", "keep_best_candidates", "logit_adjustment", "lr_factor",
           "per_class_accuracy", "predict", "real_accuracy_score", "resolve_classifier", "score", "shot_groups",
           "synthetic_agreement", "synthetic_rows", "topk_accuracy"]
