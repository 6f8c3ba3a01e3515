"""Class-incremental learning with distilled memories (the GDumb-style protocol).

Classes arrive in steps. At each step the new classes' training data is distilled (or a coreset is
selected) into ``ipc`` samples per class, which join a memory; a fresh model is trained from
scratch on the whole memory -- nothing else is kept between steps, as in GDumb (Prabhu et al.,
2020) -- and tested on all classes seen so far. The quality of the memory alone decides the
accuracy, which is why the distillation papers (DM, FRePo) use this protocol to compare methods.
"""

from dataclasses import dataclass
from numbers import Integral
import time

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions, validate_params

from ._labels import label_kind
from ._validation import random_seed

__all__ = ["class_incremental_evaluation", "ClassIncrementalResult"]


@dataclass
class ClassIncrementalResult:
    """Outcome of :func:`class_incremental_evaluation`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per step: ``step`` (1-based), ``new_classes`` and ``classes_seen`` (lists of
        labels), ``n_classes_seen``, ``memory_size`` (synthetic samples in memory),
        ``accuracy`` (on the test rows of all classes seen so far), ``n_test``,
        ``distill_time`` and ``fit_time`` (seconds).
    class_order : ndarray
        The order in which classes arrived.
    labels : {"soft", "hard"}
        Which targets the models were trained on.
    """

    table: pd.DataFrame
    class_order: np.ndarray
    labels: str

    @property
    def final_accuracy(self):
        """Accuracy after the last step, on all classes."""
        return float(self.table["accuracy"].iloc[-1])

    @property
    def average_accuracy(self):
        """Mean accuracy over the steps (the "average incremental accuracy")."""
        return float(self.table["accuracy"].mean())

    def to_dict(self):
        """A JSON-serialisable form of the table and the class order."""
        records = self.table.to_dict(orient="records")
        for r in records:
            for k, v in r.items():
                if isinstance(v, np.generic):
                    r[k] = v.item()
        return {"class_order": np.asarray(self.class_order).tolist(), "labels": self.labels,
                "steps": records}

    def plot(self, ax=None, label=None):
        """Accuracy against the number of classes seen; returns the matplotlib Figure.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Axes to draw on (e.g. to compare several methods on one plot); ``None`` creates a new
            Figure without pyplot.
        label : str or None, default=None
            Legend entry of this curve.
        """
        if ax is None:
            from matplotlib.figure import Figure

            fig = Figure(figsize=(5, 3.5), layout="constrained")
            ax = fig.add_subplot()
        else:
            fig = ax.figure
        ax.plot(self.table["n_classes_seen"], 100 * self.table["accuracy"], marker="o", label=label)
        ax.set_xlabel("classes seen")
        ax.set_ylabel("test accuracy on seen classes (%)")
        ax.set_title("Class-incremental learning")
        ax.set_xticks(self.table["n_classes_seen"])
        if label is not None:
            ax.legend()
        return fig

    def __str__(self):
        cols = ["step", "n_classes_seen", "memory_size", "accuracy"]
        return self.table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}")


def _map_soft_labels(soft, step_classes, seen):
    """Place one step's learned-label columns into the columns of all classes seen so far.

    The labels keep their kind (:func:`~sklearn_distill._labels.label_kind`), so the model is
    trained with the loss the rule gives them. Probabilities stay distributions: the other steps'
    classes get probability 0 (the step's distiller put all the mass on its own classes), and so
    do the other columns of non-negative target weights.
    Regression targets fill the other columns with the row's smallest learned value: the distiller
    of that step only said how unlike its own classes a sample is, and the least likely of those
    is the best available stand-in for "not this class" on the same (learned) scale.
    """
    soft = np.asarray(soft, dtype=np.float32)
    nonnegative = label_kind(soft) in ("probabilities", "weights")
    fill = 0.0 if nonnegative else soft.min(axis=1, keepdims=True)
    out = np.broadcast_to(np.asarray(fill, np.float32), (len(soft), len(seen))).copy()
    out[:, np.searchsorted(seen, step_classes)] = soft
    return out


@validate_params(
    {
        "distiller": [HasMethods(["fit"])],
        "X_train": ["array-like"],
        "y_train": ["array-like"],
        "X_test": ["array-like"],
        "y_test": ["array-like"],
        "n_steps": [Interval(Integral, 1, None, closed="left")],
        "class_order": ["array-like", None],
        "estimator": [HasMethods(["fit", "predict"]), None],
        "labels": [StrOptions({"auto", "hard"})],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=False,
)
def class_incremental_evaluation(distiller, X_train, y_train, X_test, y_test, *, n_steps=5,
                                 class_order=None, estimator=None, labels="auto", random_state=None):
    """Class-incremental evaluation of a distiller with a GDumb-style memory.

    The classes are split into ``n_steps`` groups (as equal as possible) in ``class_order``. At
    each step a fresh clone of ``distiller`` is fitted on the training rows of the new classes
    only; its synthetic set joins the memory; a fresh clone of ``estimator`` is trained from
    scratch on the whole memory and scored on the test rows of every class seen so far.

    This is a function rather than an estimator: the protocol consumes a train and a test set and
    produces a report, with no fitted state to reuse and no single dataset to ``fit`` -- a class
    with ``fit``/``score`` would have to bend both meanings. Its configuration is the distiller
    and estimator themselves, which are cloned, so a call never modifies them.

    Parameters
    ----------
    distiller : distiller
        Any object with ``fit`` that then exposes ``synthetic_X_`` and ``synthetic_y_`` (and
        optionally ``synthetic_y_soft_``), e.g. any distiller of this package; its ``ipc`` sets
        the memory per class. Each step's data has at least two classes.
    X_train, y_train : array-like
        Training data, in the layout the distiller accepts.
    X_test, y_test : array-like
        Test data in the layout the estimator accepts (the distiller's synthetic layout).
    n_steps : int, default=5
        Number of class steps; at most half the number of classes, so every step has at least
        two classes (distillers need two).
    class_order : array-like or None, default=None
        Order of arrival, a permutation of the classes of ``y_train``; ``None`` draws one from
        ``random_state``.
    estimator : classifier or None, default=None
        Model trained at each step. ``None``: :class:`~sklearn_distill.NeuralNetClassifier` with
        the distiller's ``image_shape`` and ``random_state``.
    labels : {"auto", "hard"}, default="auto"
        Training targets. ``"auto"``: when every step's distiller learned labels
        (``synthetic_y_soft_``) and the estimator accepts ``soft_labels`` (as
        :class:`~sklearn_distill.NeuralNetClassifier` does), the learned labels are used, with the
        loss of their kind (cross-entropy for probabilities, the squared error for regression
        targets), as everywhere in the package. Their columns cover only that step's classes;
        they are mapped into the columns of all classes seen so far: probabilities get 0 for the
        other classes, regression targets the row's smallest learned value (on the learned scale,
        "as unlike as the least likely class of its own step"). Otherwise, and with ``"hard"``,
        the hard labels ``synthetic_y_`` are used.
    random_state : int, RandomState instance or None, default=None
        Draws the class order and seeds the default estimator.

    Returns
    -------
    ClassIncrementalResult
        ``.table`` (one row per step), ``.final_accuracy``, ``.plot()``.

    References
    ----------
    Prabhu, Torr & Dokania, "GDumb: a simple approach that questions our progress in continual
    learning", ECCV 2020. Zhao & Bilen, "Dataset condensation with distribution matching",
    WACV 2023. Zhou, Nezhadarya & Ba, "Dataset distillation using neural feature regression",
    NeurIPS 2022.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn_distill import HerdingDistiller, load_digits_images
    >>> from sklearn_distill import class_incremental_evaluation
    >>> X, y = load_digits_images(return_X_y=True)
    >>> X = X.reshape(len(X), -1)
    >>> result = class_incremental_evaluation(
    ...     HerdingDistiller(ipc=5), X[:1200], y[:1200], X[1200:], y[1200:], n_steps=5,
    ...     estimator=LogisticRegression(max_iter=500), random_state=0)
    >>> result.table["memory_size"].tolist()
    [10, 20, 30, 40, 50]
    >>> result.final_accuracy > 0.8
    True
    """
    from .evaluation import NeuralNetClassifier

    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    n_train = X_train.shape[0] if hasattr(X_train, "shape") else len(X_train)
    n_test = X_test.shape[0] if hasattr(X_test, "shape") else len(X_test)
    if y_train.ndim != 1 or len(y_train) != n_train:
        raise ValueError(f"`y_train` must be 1-D with one label per row of `X_train` ({n_train}); "
                         f"got shape {y_train.shape}.")
    if y_test.ndim != 1 or len(y_test) != n_test:
        raise ValueError(f"`y_test` must be 1-D with one label per row of `X_test` ({n_test}); "
                         f"got shape {y_test.shape}.")
    classes = np.unique(y_train)
    if n_steps > len(classes) // 2:
        raise ValueError(f"`n_steps`={n_steps} is too large for {len(classes)} classes: every step "
                         f"needs at least two classes, so at most {len(classes) // 2} steps.")
    unknown = np.setdiff1d(np.unique(y_test), classes)
    if unknown.size:
        raise ValueError(f"`y_test` has classes absent from `y_train`: {unknown.tolist()[:5]}.")
    rng = np.random.RandomState(random_seed(random_state))
    if class_order is None:
        order = classes[rng.permutation(len(classes))]
    else:
        order = np.asarray(class_order)
        if order.ndim != 1 or len(order) != len(classes) or not np.array_equal(np.sort(order), classes):
            raise ValueError(f"`class_order` must be a permutation of the {len(classes)} classes of "
                             f"`y_train` ({classes.tolist()[:10]}...); got {order.tolist()[:10]}...")
    # A fixed seed for the default estimator, so each step's model differs only by its data.
    estimator_seed = int(rng.randint(2**31 - 1))
    if estimator is None:
        estimator = NeuralNetClassifier(image_shape=getattr(distiller, "image_shape", None),
                                        random_state=estimator_seed)

    def take(X, mask):
        return X.iloc[np.flatnonzero(mask)] if hasattr(X, "iloc") else np.asarray(X)[mask]

    memory_X, memory_y, memory_soft = [], [], []
    rows, use_soft = [], labels == "auto"
    for step, new in enumerate(np.array_split(order, n_steps), start=1):
        start = time.perf_counter()
        d = clone(distiller).fit(take(X_train, np.isin(y_train, new)), y_train[np.isin(y_train, new)])
        distill_time = time.perf_counter() - start
        memory_X.append(np.asarray(d.synthetic_X_))
        memory_y.append(np.asarray(d.synthetic_y_))
        soft = getattr(d, "synthetic_y_soft_", None)
        memory_soft.append(None if soft is None else (np.asarray(d.classes_), np.asarray(soft)))
        use_soft = use_soft and soft is not None

        seen = np.sort(np.concatenate(np.array_split(order, n_steps)[:step]))
        X_mem, y_mem = np.concatenate(memory_X), np.concatenate(memory_y)
        model = clone(estimator)
        start = time.perf_counter()
        if use_soft and isinstance(model, NeuralNetClassifier):
            targets = np.concatenate([_map_soft_labels(s, c, np.unique(y_mem)) for c, s in memory_soft])
            model.fit(X_mem, y_mem, soft_labels=targets)
            step_labels = "soft"
        else:
            model.fit(X_mem, y_mem)
            step_labels = "hard"
        fit_time = time.perf_counter() - start
        test_mask = np.isin(y_test, seen)
        accuracy = (float(np.mean(model.predict(take(X_test, test_mask)) == y_test[test_mask]))
                    if test_mask.any() else float("nan"))
        rows.append({"step": step, "new_classes": np.asarray(new).tolist(),
                     "classes_seen": seen.tolist(), "n_classes_seen": len(seen),
                     "memory_size": len(y_mem), "accuracy": accuracy, "n_test": int(test_mask.sum()),
                     "distill_time": distill_time, "fit_time": fit_time})
    return ClassIncrementalResult(table=pd.DataFrame(rows), class_order=order, labels=step_labels)
