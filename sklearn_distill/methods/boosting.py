r"""Boost-DD: a synthetic set grown block by block, whose prefixes are good sets on their own.

Feng, Vedantam & Kempe, "Embarrassingly Simple Dataset Distillation", ICLR 2024
(https://arxiv.org/abs/2311.07025), Sec. 5.

:class:`BoostedDistiller` wraps any gradient-based distiller that can continue from an earlier
synthetic set (``_supports_warm_start``; RaT-BPTT, FRePo, RCIG): each new block is distilled with
the earlier ones in place and trained with their learning rate scaled by :math:`\beta`, so that
every prefix of blocks is a good distilled set on its own.
"""

import copy
import os
from numbers import Integral, Real

import numpy as np
from sklearn.base import clone
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.validation import check_is_fitted

from .._validation import child_seed, random_seed, validate_training_data
from ..base import BaseDistiller, WarmStart

__all__ = ["BoostedDistiller"]



class BoostedDistiller(BaseDistiller):
    r"""Boost-DD: a synthetic set grown block by block, whose prefixes are good sets on their own.

    Distilled sets are strongly inter-correlated: a random subset of a set distilled jointly at
    ``ipc=50`` trains much worse than a set distilled directly at the subset's size. Boost-DD
    builds the set in ``n_blocks`` blocks of ``block_ipc`` samples per class: the first block is
    distilled alone; each further block is distilled with all earlier ones in the synthetic set,
    the earlier ones training with their learning rate scaled by ``beta`` (``beta=0`` freezes
    them). The first :math:`k` blocks then form a distilled set of :math:`k \cdot` ``block_ipc``
    samples per class that was optimised as such (:meth:`first_blocks`).

    Parameters
    ----------
    distiller : BaseDistiller
        A gradient-based distiller that can continue from an earlier synthetic set
        (``_supports_warm_start``), e.g. :class:`RaTBPTTDistiller`. It is cloned for every block,
        with ``ipc=block_ipc`` and ``random_state``: unchanged for the first block (which is then the
        distiller fitted alone), split from it with ``SeedSequence`` for the others.
        Its ``checkpoint`` file, if any, gets a ``.block<k>`` suffix per block.
    block_ipc : int, default=1
        Samples per class added by each block.
    n_blocks : int, default=2
    beta : float, default=0.1
        Learning-rate factor of the earlier blocks while a new block trains, in ``[0, 1]``.
    random_state : int, RandomState instance or None, default=None
        ``None``: the wrapped distiller's ``random_state``.

    Attributes
    ----------
    synthetic_X_, synthetic_y_, synthetic_y_soft_, classes_, sampling_strategy_,
    n_features_in_ :
        The whole set, blocks in order (see :class:`~sklearn_distill.base.BaseDistiller`).
    block_ : ndarray of int of shape (n_synthetic,)
        The block (0-based) of each synthetic row.
    distiller_ : BaseDistiller
        The fitted distiller of the last block (it holds the whole set); :meth:`score` and
        :meth:`evaluate` use its evaluation settings.
    n_iter_ : int
        Optimisation steps over all blocks.
    history_ : dict of list
        The blocks' histories one after another, with a ``"block"`` entry.

    Examples
    --------
    >>> from sklearn_distill import (BoostedDistiller, ConvNet, RaTBPTTDistiller,
    ...                              load_digits_images)
    >>> X, y = load_digits_images(return_X_y=True)
    >>> rat = RaTBPTTDistiller(n_steps=3, window=2, unroll=3, batch_size=64,
    ...                        model=ConvNet(width=8, depth=2, norm="instance"))
    >>> boost = BoostedDistiller(rat, block_ipc=1, n_blocks=2, beta=0.0, random_state=0).fit(X, y)
    >>> boost.synthetic_X_.shape, boost.block_.tolist()[:12]
    ((20, 8, 8, 1), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    >>> boost.first_blocks(1).synthetic_X_.shape
    (10, 8, 8, 1)
    """

    _parameter_constraints = {
        "distiller": [HasMethods(["fit", "fit_resample"])],
        "block_ipc": [Interval(Integral, 1, None, closed="left")],
        "n_blocks": [Interval(Integral, 1, None, closed="left")],
        "beta": [Interval(Real, 0, 1, closed="both")],
        "random_state": ["random_state"],
    }

    def __init__(self, distiller, block_ipc=1, n_blocks=2, beta=0.1, random_state=None):
        self.distiller = distiller
        self.block_ipc = block_ipc
        self.n_blocks = n_blocks
        self.beta = beta
        self.random_state = random_state

    def fit(self, X, y):
        """Distil ``(X, y)`` block by block.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, H, W[, C])
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : BoostedDistiller
        """
        self._validate_params()
        if not getattr(self.distiller, "_supports_warm_start", False):
            raise ValueError(f"`distiller`={type(self.distiller).__name__} cannot continue from an "
                             f"earlier synthetic set; Boost-DD needs a gradient-based distiller "
                             f"such as RaTBPTTDistiller.")
        image_shape = getattr(self.distiller, "image_shape", None)
        _, _, classes, layout = validate_training_data(self, X, y, image_shape)
        rs = self.random_state if self.random_state is not None else self.distiller.random_state
        base_seed = random_seed(rs)
        warm, history, n_iter = None, {}, 0
        fitted = None
        for b in range(self.n_blocks):
            # Block 0 is the distiller fitted alone; later blocks get seeds split from it.
            seed = base_seed if b == 0 else child_seed(base_seed, b)
            est = clone(self.distiller).set_params(ipc=self.block_ipc, random_state=seed)
            ckpt = getattr(est, "checkpoint", None)
            if ckpt is not None:
                est.set_params(checkpoint=f"{os.fspath(ckpt)}.block{b}")
            est._fit(X, y, warm_start=warm)
            x_int = est.layout_.to_internal(est.synthetic_X_)
            y_int = np.searchsorted(est.classes_, est.synthetic_y_).astype(np.int32)
            warm = WarmStart(X=x_int, y=y_int, soft_labels=est.synthetic_y_soft_,
                             learning_rate_scale=float(self.beta))
            for k, v in (est.history_ or {}).items():
                history.setdefault(k, []).extend(
                    (np.asarray(v) + n_iter).tolist() if k == "step" else list(v))
            history.setdefault("block", []).extend([b] * len(est.history_.get("step", [])))
            n_iter += int(est.n_iter_)
            fitted = est
        self.classes_, self.layout_ = classes, layout
        self.distiller_ = fitted
        self.synthetic_X_ = fitted.synthetic_X_
        self.synthetic_y_ = fitted.synthetic_y_
        self.synthetic_y_soft_ = fitted.synthetic_y_soft_
        # Block of each row: every block adds block_ipc rows per class, earlier blocks first.
        per_block = self.block_ipc * len(classes)
        self.block_ = np.repeat(np.arange(self.n_blocks), per_block)
        self.sampling_strategy_ = dict(fitted.sampling_strategy_)
        self.n_iter_ = n_iter
        self.history_ = history
        return self

    def first_blocks(self, k):
        """The set of the first ``k`` blocks, as a fitted copy of the wrapped distiller.

        Its ``synthetic_X_`` etc. hold ``k * block_ipc`` samples per class, and its
        :meth:`score`, :meth:`evaluate` and :meth:`save` work as for a directly fitted distiller.

        Parameters
        ----------
        k : int
            Number of blocks, ``1 <= k <= n_blocks``.

        Returns
        -------
        distiller : BaseDistiller
        """
        check_is_fitted(self)
        if isinstance(k, bool) or not isinstance(k, Integral) or not 1 <= k <= self.n_blocks:
            raise ValueError(f"`k` must be an integer in [1, n_blocks={self.n_blocks}]; got {k!r}.")
        rows = self.block_ < k
        sub = copy.copy(self.distiller_)
        sub.synthetic_X_ = self.synthetic_X_[rows]
        sub.synthetic_y_ = self.synthetic_y_[rows]
        sub.synthetic_y_soft_ = (None if self.synthetic_y_soft_ is None
                                 else self.synthetic_y_soft_[rows])
        sub.sampling_strategy_ = {c: int(k * self.block_ipc) for c in self.classes_.tolist()}
        sub.ipc = int(k * self.block_ipc)
        return sub

    def evaluate(self, X, y, n_models=None, progress=None):
        """Meta-test accuracy of the whole set with the wrapped distiller's evaluation settings."""
        check_is_fitted(self)
        return self.distiller_.evaluate(X, y, n_models=n_models, progress=progress)
