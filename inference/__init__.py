"""Inference methods: SVI objectives, the fit loop, and estimators of log p(x)."""

from .estimators import Evaluation, evaluate, log_importance_weights, weighted_draws
from .label_estimators import LABEL_ESTIMATORS, LabelEstimator
from .objectives import OBJECTIVES
from .optimizers import OPTIMIZERS
from .svi import FitResult, FitState, SVIConfig, fit

__all__ = [
    "LABEL_ESTIMATORS",
    "LabelEstimator",
    "OBJECTIVES",
    "OPTIMIZERS",
    "Evaluation",
    "FitResult",
    "FitState",
    "SVIConfig",
    "evaluate",
    "fit",
    "log_importance_weights",
    "weighted_draws",
]
