"""Which loss trains a network on which labels: one rule, followed by every entry point.

A synthetic set comes with one of four kinds of labels:

* ``"hard"`` -- class indices only (no ``soft_labels``): one-hot targets, trained with
  cross-entropy;
* ``"probabilities"`` -- rows that are distributions (non-negative, summing to one): trained
  with cross-entropy;
* ``"weights"`` -- non-negative rows that do not all sum to one, such as RaT-BPTT's learned
  labels (one-hot rows learned without normalisation and clipped at zero): the target weights of
  the cross-entropy ``-sum_k t_k log p_k``, as in that method's own inner loop. The loss is
  bounded below by zero, and a row's sum weighs the row;
* ``"regression"`` -- any other rows, such as the centred one-hot targets of FRePo, RCIG and KRR
  (``1 - 1/C`` on the class, ``-1/C`` elsewhere) and their learned versions: kernel-regression
  targets, trained with the squared error.

:func:`label_kind` tells the kinds apart from the values alone, so a label matrix keeps its
meaning wherever it travels (``score``, :func:`~sklearn_distill.evaluate`,
:class:`~sklearn_distill.DistilledClassifier`, the class-incremental and privacy evaluations, a
saved ``.npz`` file, the command line); :func:`loss_for_labels` maps the kind to its loss and
refuses cross-entropy on targets with negative entries (softmax cross-entropy against
``[0.9, -0.1, ...]`` has no minimum and trains towards nonsense).
"""

import numpy as np

__all__ = ["LOSS_OF_LABEL_KIND", "label_kind", "loss_for_labels"]

# The rule: the loss each kind of label is trained with.
LOSS_OF_LABEL_KIND = {"hard": "ce", "probabilities": "ce", "weights": "ce", "regression": "mse"}

# Tolerance of "non-negative and summing to one" (float32 softmax rows sum to 1 within ~1e-6).
_ATOL = 1e-4


def label_kind(soft_labels):
    """The kind of a label matrix: ``"hard"``, ``"probabilities"``, ``"weights"`` or
    ``"regression"``.

    Parameters
    ----------
    soft_labels : array-like of shape (n_samples, n_classes) or None
        ``None`` means hard labels.

    Returns
    -------
    str
        ``"hard"`` for ``None``; ``"probabilities"`` when every row is non-negative and sums to
        one (within ``1e-4``); ``"weights"`` when every entry is non-negative (within ``1e-4``)
        but not every row sums to one; ``"regression"`` otherwise (some negative entry).

    Examples
    --------
    >>> label_kind(None)
    'hard'
    >>> label_kind([[0.7, 0.2, 0.1], [0.0, 1.0, 0.0]])
    'probabilities'
    >>> label_kind([[1.4, 0.0, 0.3]])  # learned without normalisation (RaT-BPTT)
    'weights'
    >>> label_kind([[2 / 3, -1 / 3, -1 / 3]])  # centred one-hot: a regression target
    'regression'
    """
    if soft_labels is None:
        return "hard"
    soft = np.asarray(soft_labels, dtype=np.float64)
    if soft.ndim == 2 and soft.size and np.all(soft >= -_ATOL):
        if np.all(np.abs(soft.sum(axis=1) - 1.0) <= _ATOL):
            return "probabilities"
        return "weights"
    return "regression"


def loss_for_labels(soft_labels, loss="auto"):
    """The loss to train with: the rule's for ``loss="auto"``, else ``loss`` once checked.

    Parameters
    ----------
    soft_labels : array-like of shape (n_samples, n_classes) or None
        The training targets (``None``: hard labels).
    loss : {"auto", "mse", "ce"}, default="auto"
        ``"auto"`` follows :data:`LOSS_OF_LABEL_KIND`; an explicit ``"mse"`` is allowed on any
        labels; an explicit ``"ce"`` needs hard labels or rows without negative entries.

    Returns
    -------
    {"mse", "ce"}

    Raises
    ------
    ValueError
        ``loss="ce"`` with soft labels that have negative entries, e.g. the centred regression
        targets of a kernel-regression distiller.

    Examples
    --------
    >>> loss_for_labels(None), loss_for_labels([[0.9, 0.1]]), loss_for_labels([[0.5, -0.5]])
    ('ce', 'ce', 'mse')
    >>> loss_for_labels([[1.3, 0.2]])  # non-negative target weights
    'ce'
    """
    kind = label_kind(soft_labels)
    if loss == "auto":
        return LOSS_OF_LABEL_KIND[kind]
    if loss == "ce" and kind == "regression":
        soft = np.asarray(soft_labels, dtype=np.float64)
        raise ValueError(
            f"loss='ce' needs soft labels that are probability distributions or non-negative "
            f"target weights, but these are regression targets (smallest entry "
            f"{soft.min():.3g}, row sums from {soft.sum(axis=1).min():.3g} to "
            f"{soft.sum(axis=1).max():.3g}), such as the centred one-hot labels of FRePo, RCIG or "
            f"KRR. Use loss='auto' (the squared error for these) or loss='mse'.")
    return loss
