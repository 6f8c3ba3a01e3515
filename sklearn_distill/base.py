"""The contract every distiller shares.

A distiller is a scikit-learn estimator and an imbalanced-learn style sampler:

* ``fit(X, y)`` validates the data, then calls the method's ``_distill`` on clean arrays;
* ``fit_resample(X, y)`` returns the synthetic set in the containers ``X`` and ``y`` came in
  (lists, pandas, sparse, one-hot ``y``), so a distiller can sit in an
  ``imblearn.pipeline.Pipeline`` in front of a classifier; its tags are imbalanced-learn's
  sampler tags and ``get_feature_names_out`` names the columns of the returned rows;
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

import sys
from numbers import Integral
from typing import NamedTuple, Optional

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, OneToOneFeatureMixin
from sklearn.utils import get_tags
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions, validate_params
from sklearn.utils.validation import check_is_fitted

from ._jax import library_prng
from ._validation import (check_ipc, check_random_key, check_target, child_seed, validate_input,
                          validate_training_data, warn_unseen_classes)
from .protocols import PROTOCOL_NAMES, EvalProtocol

__all__ = ["BaseDistiller", "DistillationResult", "WarmStart"]

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
    it is tagged as one. It has no ``predict``: the networks that ``score`` trains do. It stays
    an imbalanced-learn sampler through its sampler tags (``imblearn.base.is_sampler``).
    """

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags

        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.classifier_tags = ClassifierTags()
        return tags


class BaseDistiller(_StratifiedCVMixin, OneToOneFeatureMixin, BaseEstimator):
    """Base class of all distillers. Not to be used directly.

    Subclasses list their parameters explicitly in ``__init__`` (scikit-learn's rule) and extend
    ``_parameter_constraints``; this class provides ``fit``, ``fit_resample``, ``score``,
    ``save``, ``get_feature_names_out`` and the fitted attributes of the contract.

    Its estimator tags are imbalanced-learn's (``imblearn.utils._tags``): ``sampler_tags`` says
    whether ``sample_indices_`` exists (only for the coresets, which select real rows), and
    ``input_tags`` that pandas DataFrames and image arrays are accepted, and sparse matrices only
    by the coresets.

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
        "eval_protocol": [StrOptions(set(PROTOCOL_NAMES)), EvalProtocol],
        "random_state": ["random_state"],
    }

    # The evaluation protocol of ``score`` for subclasses without an ``eval_protocol`` parameter.
    _default_eval_protocol = "library"

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
        X, y_enc, classes, layout = validate_training_data(
            self, X, y, self.image_shape, accept_sparse=get_tags(self).input_tags.sparse)
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
        X = result.X.toarray() if sparse.issparse(result.X) else result.X  # rows of sparse input
        self.synthetic_X_ = self.layout_.to_input(np.asarray(X, dtype=np.float32))
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
        next step is trained on the returned rows. The outputs come back in the containers the
        inputs came in, as imbalanced-learn's samplers do:

        * ``X``: a pandas DataFrame gives a DataFrame with the same columns (sparse columns when
          all of its columns are sparse), a sparse matrix a sparse matrix of the same format, a
          list a list, anything else an array in the layout of ``synthetic_X_``;
        * ``y``: a Series gives a Series with the same name and dtype, a one-column DataFrame a
          DataFrame with the same column, a list a list, and a one-hot (label-indicator) matrix
          a one-hot matrix with the same columns and dtype.

        Parameters
        ----------
        X : array-like, DataFrame or sparse matrix of shape (n_samples, n_features), \
                or array of shape (n_samples, H, W[, C])
            Training data, as for :meth:`fit` (sparse rows only for the coresets).
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            Class labels, or a one-hot matrix.

        Returns
        -------
        X_synthetic : ndarray, DataFrame, sparse matrix or list
            The synthetic samples, ``synthetic_X_`` in the container of ``X``.
        y_synthetic : ndarray, Series, DataFrame or list
            Their labels, ``synthetic_y_`` in the container and encoding of ``y``.
        """
        containers = _Containers(X, y)
        self.fit(X, containers.labels(y))
        return containers.restore(self.synthetic_X_, self.synthetic_y_)

    def score(self, X, y):
        """Meta-test accuracy: train networks from scratch on the synthetic set, test on ``X, y``.

        Trains ``n_eval_models`` networks under the evaluation protocol ``eval_protocol``
        (:func:`~sklearn_distill.get_protocol`; each method defaults to its paper's, learned labels
        used when present) and returns their mean accuracy; ``eval_steps`` overrides the
        protocol's number of steps. Deterministic for a fixed ``random_state``.

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

    @validate_params({"n_models": [Interval(Integral, 1, None, closed="left"), None],
                      "progress": [str, None]}, prefer_skip_nested_validation=True)
    def evaluate(self, X, y, n_models=None, progress=None):
        """Like :meth:`score`, but return the full :class:`~sklearn_distill.EvaluationResult`.

        ``n_models`` overrides ``n_eval_models``; ``progress`` names a progress bar to show.
        """
        from .evaluation import _evaluate

        check_is_fitted(self)
        # Once: the internal layout goes on as it is.
        X = validate_input(self, X, self.layout_, accept_sparse=get_tags(self).input_tags.sparse)
        y, _ = check_target(y)
        warn_unseen_classes(y, self.classes_)
        return _evaluate(self.synthetic_X_, self.synthetic_y_, X, y, test_validated=True,
                         soft_labels=self.synthetic_y_soft_,
                         n_models=n_models or self.n_eval_models, model=self._eval_model(),
                         n_steps=self.eval_steps, image_shape=self.image_shape,
                         protocol=self._eval_protocol(), random_state=self._eval_seed(),
                         progress=progress)

    def _eval_protocol(self):
        """The evaluation protocol of ``score``: ``eval_protocol``, else the class default."""
        return getattr(self, "eval_protocol", self._default_eval_protocol)

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

    def get_feature_names_out(self, input_features=None):
        """Names of the columns of the synthetic rows: the input feature names.

        Selected and learned rows alike live in the input's feature space, so column ``j`` of
        ``synthetic_X_`` (and of what :meth:`fit_resample` returns) is input feature ``j``. This
        is what names the columns when a pipeline is set to pandas output.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            ``None`` gives ``feature_names_in_`` when ``X`` had string column names, else
            ``["x0", "x1", ...]``; given names must have ``n_features_in_`` entries and match
            ``feature_names_in_`` when it exists.

        Returns
        -------
        feature_names_out : ndarray of str objects
            One name per input feature.

        Raises
        ------
        ValueError
            If ``input_features`` does not match the input, or if the distiller was fitted on an
            image array (its samples are images, not rows with named columns).
        """
        check_is_fitted(self, attributes="n_features_in_")
        if getattr(self, "layout_", None) is not None and self.layout_.kind == "images":
            raise ValueError(f"{type(self).__name__} was fitted on an image array of shape "
                             f"(n_samples,) + {self.layout_.sample_shape}, whose samples have no "
                             f"named columns; feature names exist for 2-D rows only.")
        return super().get_feature_names_out(input_features)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.allow_nan = False
        # -- imbalanced-learn sampler tags ------------------------------------------------------
        # Kept as one block: ``_sampler_tags`` re-expresses the tags above in imbalanced-learn's
        # tag classes, keeping every field already set. Subclasses that select real rows
        # (the coresets) set ``sampler_tags.sample_indices`` and ``input_tags.sparse``.
        tags = _sampler_tags(tags)
        # ----------------------------------------------------------------------------------------
        return tags

    def __sklearn_is_fitted__(self):
        return hasattr(self, "synthetic_X_")


# -- imbalanced-learn tags and containers ---------------------------------------------------------


def _sampler_tags(tags):
    """``tags`` as imbalanced-learn's ``Tags``, with sampler and input tags of a distiller.

    imbalanced-learn's tags are scikit-learn's plus ``sampler_tags`` and
    ``input_tags.dataframe``; its checks and ``is_sampler`` read them. Every field already set on
    ``tags`` is kept. A distiller accepts DataFrames and image arrays (3-D and 4-D); it has no
    ``sample_indices_`` and refuses sparse input unless a subclass says otherwise.
    """
    from dataclasses import fields

    from imblearn.utils._tags import InputTags, SamplerTags, Tags

    input_tags = InputTags(**{f.name: getattr(tags.input_tags, f.name)
                              for f in fields(tags.input_tags)})
    input_tags.dataframe = True
    input_tags.three_d_array = True
    kept = {f.name: getattr(tags, f.name) for f in fields(tags) if f.name != "input_tags"}
    kept["estimator_type"] = kept["estimator_type"] or "sampler"
    return Tags(**kept, input_tags=input_tags, sampler_tags=SamplerTags(sample_indices=False))


def _pandas_type(obj, name):
    """Whether ``obj`` is a pandas ``DataFrame`` or ``Series`` (without importing pandas)."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(obj, getattr(pd, name))


class _Containers:
    """The containers of the ``X`` and ``y`` given to ``fit_resample``, to return outputs in them.

    The imbalanced-learn convention: lists give lists, pandas gives pandas with the same column
    names (and series name), sparse gives sparse of the same format, and a one-hot ``y`` gives a
    one-hot ``y`` with the same columns. Values are never cast to integer column dtypes of the
    input, since learned rows are real-valued.
    """

    def __init__(self, X, y):
        self.X_kind = ("dataframe" if _pandas_type(X, "DataFrame") else "sparse" if sparse.issparse(X)
                       else "list" if isinstance(X, (list, tuple)) else "array")
        self.X_columns = X.columns if self.X_kind == "dataframe" else None
        self.X_format = X.format if self.X_kind == "sparse" else None
        self.X_sparse_frame = self.X_kind == "dataframe" and X.shape[1] > 0 and all(
            isinstance(dtype, sys.modules["pandas"].SparseDtype) for dtype in X.dtypes)
        self.y_kind = ("series" if _pandas_type(y, "Series") else "dataframe" if _pandas_type(y, "DataFrame")
                       else "list" if isinstance(y, (list, tuple)) else "array")
        self.y_name = getattr(y, "name", None) if self.y_kind == "series" else None
        self.y_columns = y.columns if self.y_kind == "dataframe" else None
        self.y_dtype = y.dtypes.iloc[0] if self.y_kind == "dataframe" else getattr(y, "dtype", None)
        try:
            self.one_hot_columns = np.shape(y)[1] if check_target(y)[1] else None
        except ValueError:  # a bad target is reported by fit
            self.one_hot_columns = None

    def labels(self, y):
        """``y`` for ``fit``: the column of a one-column DataFrame, which is a container here."""
        if self.y_kind == "dataframe" and self.one_hot_columns is None and y.shape[1] == 1:
            return y.iloc[:, 0]
        return y

    def restore(self, X, y):
        """``X`` (``synthetic_X_``) and ``y`` (``synthetic_y_``) in the recorded containers."""
        if self.one_hot_columns is not None:  # the classes of a one-hot y are column indices
            one_hot = np.zeros((len(y), self.one_hot_columns), dtype=self.y_dtype or np.int64)
            one_hot[np.arange(len(y)), np.asarray(y, dtype=np.intp)] = 1
            y = one_hot
        if self.X_kind == "sparse":
            X = sparse.csr_matrix(X).asformat(self.X_format)
        elif self.X_kind == "list":
            X = X.tolist()
        elif self.X_kind == "dataframe" and X.ndim == 2:
            import pandas as pd

            X = (pd.DataFrame.sparse.from_spmatrix(sparse.csr_matrix(X), columns=self.X_columns)
                 if self.X_sparse_frame else pd.DataFrame(X, columns=self.X_columns))
        index = X.index if self.X_kind == "dataframe" else None  # y rows aligned with X rows
        if self.y_kind == "series":
            import pandas as pd

            y = pd.Series(y, name=self.y_name, dtype=self.y_dtype, index=index)
        elif self.y_kind == "dataframe":
            import pandas as pd

            y = pd.DataFrame(np.asarray(y).reshape(len(y), -1), columns=self.y_columns,
                             index=index).astype(self.y_dtype)
        elif self.y_kind == "list":
            y = np.asarray(y).tolist()
        return X, y
