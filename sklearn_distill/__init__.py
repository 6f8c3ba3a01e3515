"""sklearn_distill: dataset distillation for the scikit-learn ecosystem.

Learn a tiny synthetic training set (a few images or rows per class) on which a model trained
from scratch comes close to one trained on the full data. Every distiller is a scikit-learn
estimator and an imbalanced-learn sampler::

    >>> from sklearn_distill import HerdingDistiller, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> X_small, y_small = HerdingDistiller(ipc=1).fit_resample(X, y)
    >>> X_small.shape
    (10, 8, 8, 1)
"""

from ._version import __version__
from .augment import ImageAugmentation
from .base import BaseDistiller, DistillationResult
from .continual import ClassIncrementalResult, class_incremental_evaluation
from .datasets import load_benchmark, load_digits_images
from .evaluation import DistilledClassifier, EvaluationResult, NeuralNetClassifier, evaluate
from .io import SyntheticSet, load_synthetic_set, save_synthetic_set
from .methods.coresets import HerdingDistiller, KCenterDistiller, RandomDistiller
from .methods.frepo import FRePoDistiller
from .methods.rcig import RCIGDistiller
from .methods.boosting import BoostedDistiller
from .methods.krr import KRRDistiller
from .methods.ratbptt import RaTBPTTDistiller
from .methods.translator import (PretrainedTranslator, Translator, TranslatorCache, TranslatorDistiller,
                                 pretrain_translator)
from .networks import MLP, VGG11, ConvNet, ResNet18
from .plotting import plot_label_heatmap, plot_learning_curve, plot_synthetic_images
from .preprocessing import ImageStandardizer, ZCAWhitening
from .privacy import MembershipInferenceEvaluator, MembershipInferenceResult
from .protocols import EvalProtocol, get_protocol

__all__ = [
    "BaseDistiller", "DistillationResult",
    "RandomDistiller", "HerdingDistiller", "KCenterDistiller",
    "FRePoDistiller", "RCIGDistiller",
    "RaTBPTTDistiller", "BoostedDistiller",
    "KRRDistiller", "TranslatorDistiller", "Translator", "PretrainedTranslator", "TranslatorCache",
    "pretrain_translator",
    "NeuralNetClassifier", "DistilledClassifier", "EvaluationResult", "evaluate",
    "EvalProtocol", "get_protocol",
    "ConvNet", "MLP", "ResNet18", "VGG11", "ImageAugmentation",
    "ZCAWhitening", "ImageStandardizer",
    "load_digits_images", "load_benchmark",
    "SyntheticSet", "save_synthetic_set", "load_synthetic_set",
    "plot_synthetic_images", "plot_label_heatmap", "plot_learning_curve",
    "MembershipInferenceEvaluator", "MembershipInferenceResult",
    "class_incremental_evaluation", "ClassIncrementalResult",
    "__version__",
]
