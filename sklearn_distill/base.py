"""The contract every distiller shares.

A distiller is a scikit-learn estimator and an imbalanced-learn style sampler:

* ``fit(X, y)`` validates the data, then calls the method's ``_distill`` on clean arrays;
* ``fit_resample(X, y)`` returns the synthetic set, so a distiller can sit in an
  ``imblearn.pipeline.Pipeline`` in front of a classifier;
* ``score(X, y)`` trains networks from scratch on the synthetic set and returns their mean
  accuracy on ``(X, y)`` -- what ``GridSearchCV`` maximises.

Subclasses implement one private method::

    def _distill(self, X, y, key) -> DistillationResult

``X`` is float32 in the internal layout (NHWC images, or 2-D rows for tabular data), ``y`` holds
class indices ``0..n_classes-1`` (``self.classes_`` maps them back), ``key`` is the JAX PRNG key
derived from ``random_state``; ``self.layout_`` and ``self.classes_`` are set before the call.

Gradient-based methods that can continue from an earlier synthetic set (what
:class:`~sklearn_distill.BoostedDistiller` needs) set ``_supports_warm_start = True`` and accept
``_distill(X, y, key, warm_start=None)`` with a :class:`WarmStart`: the earlier rows come first in
the result, followed by ``ipc`` new rows per class, and the earlier rows train with the learning
rate scaled by ``warm_start.learning_rate_scale`` (``0`` leaves them bit-for-bit unchanged).
"""

import os
from numbers import Integral, Real
from typing import NamedTuple, Optional

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._jax import library_prng
from ._validation import (check_ipc, check_random_key, child_seed, validate_input,
                          validate_training_data, warn_unseen_classes)

__all__ = ["BaseDistiller", "DistillationResult", "WarmStart"]

# The constraints of the parameters every gradient-based distiller shares (same names, same
# meaning across methods); a method spreads them into its own ``_parameter_constraints``.
GRADIENT_PARAMETER_CONSTRAINTS = {
    "n_steps": [Interval(Integral, 1, None, closed="left")],
    "learning_rate": [Interval(Real, 0, None, closed="neither")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "learn_labels": ["boolean"],
    "init": [StrOptions({"real", "noise", "real+noise"})],
    "model": [HasMethods(["init", "apply"]), None],
    "checkpoint": [str, os.PathLike, None],
    "checkpoint_every": [Interval(Integral, 1, None, closed="left")],
    "log_every": [Interval(Integral, 1, None, closed="left")],
    "verbose": ["verbose"],
}


# Which child of ``random_state`` seeds the evaluation networks of ``score``.
_EVAL_SEED_CHILD = 1


class DistillationResult(NamedTuple):
    """What a method's ``_distill`` returns.

    Attributes
    ----------
    X : ndarray
        Synthetic samples in the internal layout (float32).
    y : ndarray of int
        Class index of each synthetic sample.
    soft_labels : ndarray of shape (n_synthetic, n_classes) or None
        Learned (or regression-target) labels, for methods that have them.
    n_iter : int
        Optimisation steps (or greedy selection rounds) taken.
    history : dict of list or None
        Per logged step: ``"step"``, ``"time"``, ``"loss"`` and optionally ``"val_accuracy"``.
    """

    X: np.ndarray
    y: np.ndarray
    soft_labels: Optional[np.ndarray] = None
    n_iter: int = 0
    history: Optional[dict] = None


class WarmStart(NamedTuple):
    """Earlier synthetic rows for a gradient-based method to continue from (Boost-DD).

    Attributes
    ----------
    X : ndarray
        Earlier synthetic samples in the internal layout (float32).
    y : ndarray of int
        Their class indices.
    soft_labels : ndarray of shape (n_earlier, n_classes) or None
        Their learned labels (``None``: the method's initial labels for ``y``).
    learning_rate_scale : float
        Factor on the learning rate of the earlier rows (and labels); ``0`` freezes them.
    """

    X: np.ndarray
    y: np.ndarray
    soft_labels: Optional[np.ndarray] = None
    learning_rate_scale: float = 0.0


class _StratifiedCVMixin:
    """Tag a distiller as a classifier, so that an integer ``cv`` over it is stratified.

    scikit-learn's ``cross_val_score``, ``cross_validate`` and ``GridSearchCV`` turn an integer
    ``cv`` into ``StratifiedKFold`` only for estimators whose ``estimator_type`` tag is
    ``"classifier"``, and into plain ``KFold`` otherwise. A distiller's ``score`` is a
    classification accuracy and its ``fit`` needs every class in the training fold (a fold of
    class-sorted data without two or three classes distils a set that cannot predict them), so
    it is tagged as one. It has no ``predict``: the networks that ``score`` trains do.
    """

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags

        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.classifier_tags = ClassifierTags()
        return tags


class BaseDistiller(_StratifiedCVMixin, BaseEstimator):
    """Base class of all distillers. Not to be used directly.

    Subclasses list their parameters explicitly in ``__init__`` (scikit-learn's rule) and extend
    ``_parameter_constraints``; this class provides ``fit``, ``fit_resample``, ``score``,
    ``save`` and the fitted attributes of the contract.

    Attributes
    ----------
    synthetic_X_ : ndarray
        Synthetic inputs, in the layout of the ``X`` given to ``fit``.
    synthetic_y_ : ndarray
        Hard class label of each synthetic sample, drawn from ``classes_``.
    synthetic_y_soft_ : ndarray of shape (n_synthetic, n_classes) or None
        Learned label matrix, for methods that learn labels.
    classes_ : ndarray
    sampling_strategy_ : dict
        Synthetic samples per class, ``{class: ipc}``.
    n_iter_ : int
    history_ : dict of list
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had string column names.
    """

    _parameter_constraints = {
        "ipc": [Interval(Integral, 1, None, closed="left")],
        "image_shape": [tuple, list, None],
        "n_eval_models": [Interval(Integral, 1, None, closed="left")],
        "eval_steps": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "eval_model": [HasMethods(["init", "apply"]), None],
        "random_state": ["random_state"],
    }

    # Whether ``_distill`` accepts ``warm_start=WarmStart(...)`` (see the module docstring).
    _supports_warm_start = False

    # -- to implement ---------------------------------------------------------------------------

    def _distill(self, X, y, key):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- the contract ---------------------------------------------------------------------------

    def fit(self, X, y):
        """Distil ``(X, y)`` into ``ipc`` synthetic samples per class.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W[, C])
            Training data: rows (tabular, or images with ``image_shape``) or image arrays.
        y : array-like of shape (n_samples,)
            Class labels (any hashable values, at least two classes).

        Returns
        -------
        self : object
        """
        return self._fit(X, y)

    def _fit(self, X, y, warm_start=None):
        """``fit``, optionally continuing from earlier synthetic rows (:class:`WarmStart`)."""
        self._validate_params()
        X, y_enc, classes, layout = validate_training_data(self, X, y, self.image_shape)
        check_ipc(y_enc, self.ipc, classes)
        self.classes_, self.layout_ = classes, layout
        extra = {}
        if warm_start is not None:
            if not self._supports_warm_start:
                raise TypeError(f"{type(self).__name__} cannot continue from an earlier synthetic "
                                f"set (it is not a gradient-based distiller).")
            extra["warm_start"] = warm_start
        with library_prng():
            result = self._distill(X, y_enc, check_random_key(self.random_state), **extra)
        self._store_result(result)
        return self

    def _store_result(self, result):
        self.synthetic_X_ = self.layout_.to_input(np.asarray(result.X, dtype=np.float32))
        self.synthetic_y_ = self.classes_[np.asarray(result.y)]
        self.synthetic_y_soft_ = (None if result.soft_labels is None
                                  else np.asarray(result.soft_labels, dtype=np.float32))
        counts = np.bincount(np.asarray(result.y), minlength=len(self.classes_))
        self.sampling_strategy_ = {c: int(k) for c, k in zip(self.classes_.tolist(), counts)}
        self.n_iter_ = int(result.n_iter)
        self.history_ = dict(result.history or {})

    def fit_resample(self, X, y):
        """Distil ``(X, y)`` and return the synthetic set.

        This is the imbalanced-learn sampler contract: in an ``imblearn.pipeline.Pipeline`` the
        next step is trained on the returned rows. A pandas DataFrame in gives a DataFrame out
        (2-D layouts), and a named Series ``y`` a Series.

        Returns
        -------
        X_synthetic : ndarray or DataFrame
        y_synthetic : ndarray or Series
        """
        self.fit(X, y)
        X_out, y_out = self.synthetic_X_, self.synthetic_y_
        if hasattr(X, "iloc") and X_out.ndim == 2:
            import pandas as pd

            X_out = pd.DataFrame(X_out, columns=getattr(X, "columns", None))
        if hasattr(y, "iloc"):
            import pandas as pd

            y_out = pd.Series(y_out, name=getattr(y, "name", None))
        return X_out, y_out

    def score(self, X, y):
        """Meta-test accuracy: train networks from scratch on the synthetic set, test on ``X, y``.

        Trains ``n_eval_models`` networks (the evaluation protocol: no normalisation layers,
        Adam with warm-up and cosine decay, augmentation, learned labels when present) and
        returns their mean accuracy. Deterministic for a fixed ``random_state``.

        Parameters
        ----------
        X : array-like
            Test data, in the layout and preprocessing of the data given to ``fit``.
        y : array-like of shape (n_samples,)

        Returns
        -------
        score : float
        """
        return self.evaluate(X, y).mean

    def evaluate(self, X, y, n_models=None, progress=None):
        """Like :meth:`score`, but return the full :class:`~sklearn_distill.EvaluationResult`.

        ``n_models`` overrides ``n_eval_models``; ``progress`` names a progress bar to show.
        """
        from .evaluation import evaluate

        check_is_fitted(self)
        X = self.layout_.to_input(validate_input(self, X, self.layout_))
        warn_unseen_classes(y, self.classes_)
        return evaluate(self.synthetic_X_, self.synthetic_y_, X, y,
                        soft_labels=self.synthetic_y_soft_,
                        n_models=n_models or self.n_eval_models, model=self._eval_model(),
                        n_steps=self.eval_steps, image_shape=self.image_shape,
                        random_state=self._eval_seed(), progress=progress)

    def _eval_seed(self):
        """The seed of the evaluation networks, split from ``random_state``.

        Fixed for an integer ``random_state`` (0 otherwise), so repeated scores of one fit agree;
        a child seed, never ``random_state + 1``, so every seed ``fit`` accepts works here.
        """
        seed = self.random_state if isinstance(self.random_state, Integral) else 0
        return child_seed(seed, _EVAL_SEED_CHILD)

    def _eval_model(self):
        """The evaluation network: ``eval_model``, else the distillation ConvNet without norm."""
        if self.eval_model is not None:
            return self.eval_model
        model = getattr(self, "model", None)
        if model is not None and hasattr(model, "norm"):
            return model.clone(norm="none", activation="relu", parent=None)
        return None

    def save(self, path, metadata=None):
        """Save the synthetic set to ``path`` (``.npz`` arrays + a JSON metadata block).

        No pickle is involved, so loading a file from someone else cannot run code.
        See :func:`sklearn_distill.load_synthetic_set`.
        """
        from .io import save_synthetic_set

        check_is_fitted(self)
        return save_synthetic_set(path, self, metadata=metadata)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.allow_nan = False
        return tags

    def __sklearn_is_fitted__(self):
        return hasattr(self, "synthetic_X_")
