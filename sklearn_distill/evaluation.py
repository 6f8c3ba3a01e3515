"""Train networks from scratch and measure them: the evaluation protocol of dataset distillation.

The protocol (``docs``: evaluation): networks of the ConvNet family *without* normalisation layers
(an MLP for tabular data) are trained from scratch on a (synthetic) training set with Adam, a
linear warm-up then cosine decay, the loss that suits the labels (cross-entropy for hard labels and
for learned probabilities, the squared error for regression targets; :mod:`sklearn_distill._labels`
holds the rule), and image augmentation; the last state is kept (no checkpoint is ever picked on
test data) and the mean ± std test accuracy over several independently initialised networks is
reported.

Several networks are trained at once (the trainer, :mod:`sklearn_distill._trainer`): their
parameters are stacked on a leading axis and one ``jax.jit``-compiled step updates all of them
under ``jax.vmap``, so evaluating five models costs one compilation and one dispatch per step, not
five separate fits.
"""

import dataclasses
import time
from dataclasses import dataclass
from numbers import Integral, Real

import jax
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions, validate_params
from sklearn.utils.validation import check_is_fitted

from ._jax import library_prng
from ._trainer import predict_networks, train_networks
from ._labels import loss_for_labels
from ._validation import (check_random_key, validate_input, validate_training_data,
                          warn_unseen_classes)
from .networks import default_network, with_num_classes
from .protocols import EvalProtocol, PROTOCOL_NAMES, get_protocol, library_steps

__all__ = ["NeuralNetClassifier", "DistilledClassifier", "EvaluationResult", "evaluate",
           "train_networks", "predict_networks", "default_eval_model", "default_eval_steps"]


# --------------------------------------------------------------------------------------------
# Defaults of the protocol
# --------------------------------------------------------------------------------------------

def default_eval_model(sample_shape, protocol="library"):
    """The evaluation network for samples of this shape under ``protocol``, or an MLP for rows.

    ``"library"``: ConvNet without normalisation, width 128; ``"frepo"`` and ``"rcig"``: the same
    with the width doubled per block (their ``Conv``); ``"ratbptt"`` and ``"dc"``: instance norm
    with ``GroupNorm``'s epsilon (1e-5) and PyTorch's initialisation (their ``ConvNet``). Depth
    3, or 4 from 64 pixels (:func:`~sklearn_distill.networks.default_network`).
    """
    name = get_protocol(protocol).name
    if len(sample_shape) > 1 and name in ("frepo", "rcig"):
        return default_network(sample_shape, width_doubling=True)
    if len(sample_shape) > 1 and name in ("ratbptt", "dc"):
        return default_network(sample_shape, norm="instance", weight_init="pytorch",
                               norm_epsilon=1e-5)
    return default_network(sample_shape)  # "library", rows, and protocols of other names


def default_eval_steps(n_train):
    """Training steps of the ``"library"`` protocol for a training set of ``n_train`` rows.

    1000 steps up to 10 rows (ipc 1 on ten classes), 2000 up to 100, 5000 up to 500, 10000
    beyond (``sklearn_distill.protocols.library_steps``; the named protocols have their own
    tables, :meth:`~sklearn_distill.EvalProtocol.n_steps`).

    Examples
    --------
    >>> default_eval_steps(10), default_eval_steps(100), default_eval_steps(500)
    (1000, 2000, 5000)
    """
    return library_steps(n_train)


def resolve_augmentation(augment, sample_shape, protocol="library"):
    """Turn the ``augment`` parameter into an augmentation callable or ``None``.

    ``"auto"`` is the protocol's augmentation (:meth:`EvalProtocol.image_augmentation`).
    """
    if augment is None or augment == "none" or len(sample_shape) == 1:
        return None
    from .augment import ImageAugmentation

    if augment == "auto":
        return get_protocol(protocol).image_augmentation(tuple(sample_shape))
    if isinstance(augment, ImageAugmentation):
        return augment
    raise ValueError(f"`augment` must be 'auto', 'none', None or an ImageAugmentation; got {augment!r}.")


def _targets(y_encoded, n_classes, soft_labels):
    if soft_labels is not None:
        return np.asarray(soft_labels, np.float32)
    return np.eye(n_classes, dtype=np.float32)[y_encoded]


def _mirror(X, targets, protocol):
    """Add the mirror images of RGB images when the protocol asks for them (RCIG)."""
    if not protocol.mirror:
        return X, targets, protocol
    if X.ndim != 4 or X.shape[-1] != 3:
        return X, targets, dataclasses.replace(protocol, mirror=False)
    return (np.concatenate([X, X[:, :, ::-1]]), np.concatenate([targets, targets]), protocol)


def _check_soft_labels(soft_labels, n_rows, n_classes):
    if soft_labels is None:
        return None
    soft = np.asarray(soft_labels, dtype=np.float64)
    if soft.shape != (n_rows, n_classes):
        raise ValueError(f"`soft_labels` must have shape (n_samples, n_classes) = ({n_rows}, {n_classes}); "
                         f"got {soft.shape}.")
    with np.errstate(over="ignore"):
        soft = soft.astype(np.float32)  # the training dtype: finite there, not only in float64
    if not np.all(np.isfinite(soft)):
        raise ValueError("`soft_labels` contains NaN, infinity or a value too large for "
                         "dtype('float32').")
    return soft


# --------------------------------------------------------------------------------------------
# The scikit-learn face
# --------------------------------------------------------------------------------------------

_NET_CONSTRAINTS = {
    "model": [HasMethods(["init", "apply"]), None],
    "n_steps": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
    "learning_rate": [Interval(Real, 0, None, closed="neither"), None],
    "batch_size": [Interval(Integral, 1, None, closed="left"), None],
    "loss": [StrOptions({"auto", "mse", "ce"})],
    "augment": [StrOptions({"auto", "none"}), HasMethods(["sample_params", "apply"]), None],
    "weight_decay": [Interval(Real, 0, None, closed="left"), None],
    "protocol": [StrOptions(set(PROTOCOL_NAMES)), EvalProtocol],
    "image_shape": [tuple, list, None],
    "random_state": ["random_state"],
}


class NeuralNetClassifier(ClassifierMixin, BaseEstimator):
    """A network trained from scratch, as a scikit-learn classifier.

    An evaluation protocol of dataset distillation as an estimator (``protocol``; by default the
    library's: Adam with linear warm-up and cosine decay, cross-entropy for hard labels and for
    soft labels that are probabilities, the squared error for other soft labels (regression
    targets), image augmentation), the last state kept.

    Parameters
    ----------
    model : flax.linen.Module or None, default=None
        The network, e.g. ``ConvNet(width=128, depth=3)``; ``None`` picks the protocol's default
        (:func:`default_eval_model`) for images, an MLP for tabular rows.
    n_steps : int or "auto", default="auto"
        Optimisation steps run; "auto": the protocol's step table for the training-set size
        (:meth:`~sklearn_distill.EvalProtocol.n_steps`).
    learning_rate : float or None, default=None
        Peak learning rate; ``None``: the protocol's (1e-3 for ``"library"``).
    batch_size : int or None, default=None
        Rows per step (smaller training sets are used whole); ``None``: the protocol's (256 for
        ``"library"``).
    loss : {"auto", "mse", "ce"}, default="auto"
        "auto": the protocol's loss for the labels' kind
        (:meth:`~sklearn_distill.EvalProtocol.loss`; ``"library"``: cross-entropy for hard labels
        and for ``soft_labels`` whose rows are probability distributions, half the squared error
        for other ``soft_labels``, i.e. regression targets such as centred one-hot rows). "ce"
        with soft labels that are not distributions raises a ``ValueError`` in ``fit``.
    augment : "auto", "none", None or ImageAugmentation, default="auto"
        "auto": the protocol's augmentation for images, none for rows.
    weight_decay : float or None, default=None
        Weight decay (decoupled, AdamW, for Adam); ``None``: the protocol's (0 for ``"library"``).
    protocol : {"library", "frepo", "rcig", "ratbptt", "dc"} or EvalProtocol, default="library"
        The evaluation protocol (:func:`~sklearn_distill.get_protocol`) that supplies every value
        left to "auto" or ``None``.
    image_shape : tuple or None, default=None
        ``(H, W, C)`` of images given as 2-D rows.
    random_state : int, RandomState instance or None, default=None

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    model_ : flax.linen.Module
        The network used, with its head sized for ``classes_``.
    variables_ : dict of ndarray
        Trained network variables (NumPy arrays, so the estimator pickles).
    loss_ : {"mse", "ce"}
        The loss trained with (``loss``, or the one ``"auto"`` picked for the labels).
    loss_curve_ : ndarray of shape (n_steps,)
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_distill import MLP, NeuralNetClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = NeuralNetClassifier(MLP(hidden_sizes=(32,)), n_steps=300, learning_rate=1e-2,
    ...                           random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

    _parameter_constraints = dict(_NET_CONSTRAINTS)

    def __init__(self, model=None, *, n_steps="auto", learning_rate=None, batch_size=None, loss="auto",
                 augment="auto", weight_decay=None, protocol="library", image_shape=None,
                 random_state=None):
        self.model = model
        self.n_steps = n_steps
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.loss = loss
        self.augment = augment
        self.weight_decay = weight_decay
        self.protocol = protocol
        self.image_shape = image_shape
        self.random_state = random_state

    def _protocol(self):
        """The protocol with this estimator's explicit overrides."""
        protocol = get_protocol(self.protocol)
        overrides = {name: value for name, value in (("learning_rate", self.learning_rate),
                                                      ("batch_size", self.batch_size),
                                                      ("weight_decay", self.weight_decay))
                     if value is not None}
        return dataclasses.replace(protocol, **overrides) if overrides else protocol

    def _fit_stacked(self, X, y, soft_labels, n_models, progress=None):
        """Validate, then train ``n_models`` networks; returns the stacked variables."""
        self._validate_params()
        X, y_enc, classes, layout = validate_training_data(self, X, y, self.image_shape)
        self.classes_, self._layout = classes, layout
        soft = _check_soft_labels(soft_labels, len(y_enc), len(classes))
        protocol = self._protocol()
        model = (self.model if self.model is not None
                 else default_eval_model(layout.sample_shape, protocol))
        self.model_ = with_num_classes(model, len(classes))
        loss = self.loss_ = (protocol.loss(soft) if self.loss == "auto"
                             else loss_for_labels(soft, self.loss))
        augmentation = resolve_augmentation(self.augment, layout.sample_shape, protocol)
        n_steps = (protocol.n_steps(len(X), augmentation is not None) if self.n_steps == "auto"
                   else self.n_steps)
        targets = _targets(y_enc, len(classes), soft)
        X, targets, protocol = _mirror(X, targets, protocol)
        with library_prng():
            variables, losses = train_networks(
                check_random_key(self.random_state), self.model_, X, targets,
                n_models=n_models, n_steps=n_steps, loss=loss, augmentation=augmentation,
                progress=progress, protocol=protocol)
        losses = np.asarray(losses)
        if not np.all(np.isfinite(losses[:, -1])):
            raise FloatingPointError("Training diverged (non-finite loss); lower `learning_rate`.")
        return jax.device_get(variables), losses

    def fit(self, X, y, soft_labels=None):
        """Train the network from scratch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W[, C])
        y : array-like of shape (n_samples,)
            Class labels (any hashable values).
        soft_labels : array-like of shape (n_samples, n_classes), default=None
            Targets instead of one-hot labels (e.g. a distiller's learned labels), columns
            ordered as ``np.unique(y)``: probability rows or regression targets (see ``loss``).

        Returns
        -------
        self : NeuralNetClassifier
        """
        variables, losses = self._fit_stacked(X, y, soft_labels, n_models=1)
        self.variables_ = jax.tree.map(lambda a: np.asarray(a[0]), variables)
        self.loss_curve_ = losses[0]
        return self

    def _logits(self, X):
        # Not a public decision_function: scikit-learn expects that to be 1-D for two classes.
        check_is_fitted(self)
        X = validate_input(self, X, self._layout)
        stacked = jax.tree.map(lambda a: a[None], self.variables_)
        return predict_networks(self.model_, stacked, X)[0]

    def predict_proba(self, X):
        """Class probabilities: the softmax of the network outputs."""
        logits = self._logits(X)
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X):
        """Predicted class labels."""
        logits = self._logits(X)
        return self.classes_[np.argmax(logits, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags


@dataclass
class EvaluationResult:
    """Accuracies of networks trained from scratch on one training set.

    Attributes
    ----------
    scores : ndarray of shape (n_models,)
        Test accuracy of each network.
    fit_time : float
        Wall time (s) to train all networks, compilation included.
    n_steps : int
    protocol : str
        Name of the evaluation protocol.
    """

    scores: np.ndarray
    fit_time: float
    n_steps: int
    protocol: str = "library"

    @property
    def mean(self):
        return float(np.mean(self.scores))

    @property
    def std(self):
        return float(np.std(self.scores))

    def __str__(self):
        return f"{100 * self.mean:.2f} ± {100 * self.std:.2f} %"


@validate_params({"n_models": [Interval(Integral, 1, None, closed="left")],
                  "progress": [str, None]}, prefer_skip_nested_validation=True)
def evaluate(X_train, y_train, X_test, y_test, *, soft_labels=None, n_models=5, model=None,
             n_steps="auto", learning_rate=None, batch_size=None, loss="auto", augment="auto",
             weight_decay=None, protocol="library", image_shape=None, random_state=None,
             progress=None):
    """Train ``n_models`` networks from scratch on ``(X_train, y_train)``; test them on ``X_test``.

    The networks are trained together (vectorised) and scored on the same test data, which must
    have had the same preprocessing as the training data.

    Parameters
    ----------
    X_train, y_train : array-like
        The (synthetic) training set, as rows or images.
    X_test, y_test : array-like
        Test data in the same layout.
    soft_labels : array-like of shape (n_train, n_classes), default=None
        Targets instead of one-hot labels (e.g. a distiller's learned labels): rows that are
        probability distributions train with cross-entropy, others with the squared error
        (``loss="auto"``).
    n_models : int, default=5
    model, n_steps, learning_rate, batch_size, loss, augment, weight_decay, protocol, image_shape :
        As for :class:`NeuralNetClassifier`; ``protocol`` names the evaluation protocol
        (``"library"``, ``"frepo"``, ``"rcig"``, ``"ratbptt"``, ``"dc"``) whose values fill
        every parameter left to "auto" or ``None``.
    random_state : int, RandomState instance or None
    progress : str or None
        Description of a progress bar over the training steps; ``None`` shows none.

    Returns
    -------
    EvaluationResult
        ``.mean``, ``.std`` and per-network ``.scores``.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_distill import MLP, evaluate
    >>> X, y = load_iris(return_X_y=True)
    >>> result = evaluate(X, y, X, y, n_models=3, model=MLP(hidden_sizes=(32,)), n_steps=300,
    ...                   learning_rate=1e-2, random_state=0)
    >>> result.scores.shape, result.mean > 0.9
    ((3,), True)
    """
    return _evaluate(X_train, y_train, X_test, y_test, soft_labels=soft_labels, n_models=n_models,
                     model=model, n_steps=n_steps, learning_rate=learning_rate,
                     batch_size=batch_size, loss=loss, augment=augment, weight_decay=weight_decay,
                     protocol=protocol, image_shape=image_shape, random_state=random_state,
                     progress=progress)


def _evaluate(X_train, y_train, X_test, y_test, *, soft_labels=None, n_models=5, model=None,
              n_steps="auto", learning_rate=None, batch_size=None, loss="auto", augment="auto",
              weight_decay=None, protocol="library", image_shape=None, random_state=None,
              progress=None, test_validated=False):
    """:func:`evaluate`; ``test_validated``: ``X_test`` is already checked, in the internal layout.

    A fitted distiller's ``score`` validates its test data against its own fit and passes it on
    here, so the data is validated once. The callers validate ``n_models``.
    """
    clf = NeuralNetClassifier(model, n_steps=n_steps, learning_rate=learning_rate,
                              batch_size=batch_size, loss=loss, augment=augment,
                              weight_decay=weight_decay, protocol=protocol,
                              image_shape=image_shape, random_state=random_state)
    start = time.perf_counter()
    variables, losses = clf._fit_stacked(X_train, y_train, soft_labels, n_models, progress=progress)
    fit_time = time.perf_counter() - start
    if not test_validated:
        X_test = validate_input(clf, X_test, clf._layout)
    y_test = np.asarray(y_test)
    logits = predict_networks(clf.model_, variables, X_test)
    predictions = clf.classes_[np.argmax(logits, axis=2)]
    scores = np.mean(predictions == y_test[None, :], axis=1)
    return EvaluationResult(scores=scores, fit_time=fit_time, n_steps=losses.shape[1],
                            protocol=get_protocol(clf.protocol).name)


class DistilledClassifier(ClassifierMixin, BaseEstimator):
    """A classifier trained only on a distilled set: distil, then train from scratch.

    ``fit`` clones and fits ``distiller`` on the data, then fits a fresh clone of ``estimator``
    on the synthetic set (with the learned labels when the distiller has them and the estimator
    accepts ``soft_labels``). Its cross-validated score is the accuracy of a model trained from
    scratch on the distilled set, and it is the model a membership-inference attack targets.

    Parameters
    ----------
    distiller : BaseDistiller
        Any distiller of this package.
    estimator : classifier or None, default=None
        Trained on the synthetic set; ``None`` means :class:`NeuralNetClassifier` with the
        distiller's ``image_shape``.
    random_state : int, RandomState instance or None, default=None
        Seeds the default estimator.

    Attributes
    ----------
    distiller_ : BaseDistiller
    estimator_ : classifier
    classes_ : ndarray

    Examples
    --------
    >>> from sklearn_distill import DistilledClassifier, HerdingDistiller, load_digits_images
    >>> from sklearn_distill import ConvNet, NeuralNetClassifier
    >>> X, y = load_digits_images(return_X_y=True)
    >>> clf = DistilledClassifier(HerdingDistiller(ipc=5),
    ...                           NeuralNetClassifier(ConvNet(width=16), n_steps=200, random_state=0))
    >>> clf.fit(X, y).score(X, y) > 0.6
    True
    """

    _parameter_constraints = {
        "distiller": [HasMethods(["fit", "fit_resample"])],
        "estimator": [HasMethods(["fit", "predict"]), None],
        "random_state": ["random_state"],
    }

    def __init__(self, distiller, estimator=None, random_state=None):
        self.distiller = distiller
        self.estimator = estimator
        self.random_state = random_state

    def fit(self, X, y):
        """Distil ``(X, y)`` and train the estimator on the synthetic set."""
        from ._validation import check_dense

        self._validate_params()
        check_dense(X, "DistilledClassifier")  # its estimator predicts on dense data
        self.distiller_ = clone(self.distiller).fit(X, y)
        if self.estimator is None:
            estimator = NeuralNetClassifier(image_shape=getattr(self.distiller_, "image_shape", None),
                                            random_state=self.random_state)
        else:
            estimator = clone(self.estimator)
        soft = getattr(self.distiller_, "synthetic_y_soft_", None)
        if soft is not None and isinstance(estimator, NeuralNetClassifier):
            estimator.fit(self.distiller_.synthetic_X_, self.distiller_.synthetic_y_, soft_labels=soft)
        else:
            estimator.fit(self.distiller_.synthetic_X_, self.distiller_.synthetic_y_)
        self.estimator_ = estimator
        self.classes_ = self.distiller_.classes_
        self.n_features_in_ = self.distiller_.n_features_in_
        if hasattr(self.distiller_, "feature_names_in_"):
            self.feature_names_in_ = self.distiller_.feature_names_in_
        return self

    def predict(self, X):
        check_is_fitted(self)
        return self.estimator_.predict(X)

    def score(self, X, y, sample_weight=None):
        """Mean accuracy on ``(X, y)``; warns when ``y`` holds classes absent from ``fit``."""
        check_is_fitted(self)
        warn_unseen_classes(y, self.classes_, who="the distilled classifier")
        return super().score(X, y, sample_weight=sample_weight)

    def predict_proba(self, X):
        check_is_fitted(self)
        proba = self.estimator_.predict_proba(X)
        # The estimator saw only the synthetic classes; map its columns onto classes_.
        columns = np.searchsorted(self.classes_, self.estimator_.classes_)
        out = np.zeros((proba.shape[0], len(self.classes_)))
        out[:, columns] = proba
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
