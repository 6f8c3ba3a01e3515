"""Coreset baselines: pick ``ipc`` real rows per class instead of learning synthetic ones.

* :class:`RandomDistiller` -- a class-balanced random subset (the "random" row of every table);
* :class:`HerdingDistiller` -- herding (Welling 2009; as used by iCaRL and the distillation
  benchmarks): greedily pick the row that keeps the running mean of the picked embeddings
  closest to the class mean;
* :class:`KCenterDistiller` -- k-center greedy (Sener & Savarese 2018): start from the row
  nearest the class mean, then repeatedly pick the row farthest from everything picked.

Selection runs per class in NumPy with distances updated incrementally (each greedy round is one
matrix-vector product over the class), which takes seconds for the 60,000 MNIST rows. Sparse
tabular rows (SciPy sparse matrices, sparse DataFrames) stay sparse throughout: only the
products with the running sums and picked rows are dense vectors. Classes are
independent, so they are processed through joblib (``n_jobs``), which a Dask or Ray backend
spreads over a cluster unchanged.
"""

from numbers import Integral

import numpy as np
from joblib import Parallel, delayed
from scipy import sparse
from sklearn.utils._param_validation import HasMethods, StrOptions

from ..base import BaseDistiller, DistillationResult

__all__ = ["RandomDistiller", "HerdingDistiller", "KCenterDistiller"]


def _as_float64(E):
    """``E`` as a float64 ndarray, or as a float64 CSR matrix when it is sparse."""
    return sparse.csr_matrix(E, dtype=np.float64) if sparse.issparse(E) else np.asarray(E, np.float64)


def _row(E, i):
    """Row ``i`` of ``E`` as a dense 1-D array."""
    return E[i].toarray().ravel() if sparse.issparse(E) else E[i]


def _mean_and_sq_norms(E):
    """The mean row of ``E`` and the squared norm of each row, as dense arrays."""
    if sparse.issparse(E):
        return np.asarray(E.mean(axis=0)).ravel(), np.asarray(E.multiply(E).sum(axis=1)).ravel()
    return E.mean(axis=0), np.einsum("ij,ij->i", E, E)


def herding_indices(E, k):
    """Indices of ``k`` rows of ``E`` chosen by herding, in the order picked.

    At step t the row minimising ``|| mu - (S + e) / t ||`` is picked, where ``mu`` is the mean
    of all rows and ``S`` the sum of those already picked; picked rows are excluded. ``E`` may
    be a dense array or a sparse matrix.
    """
    E = _as_float64(E)
    mu, sq_norms = _mean_and_sq_norms(E)
    total = np.zeros_like(mu)
    picked = np.zeros(E.shape[0], dtype=bool)
    order = []
    for t in range(1, k + 1):
        # ||mu - (S + e)/t||^2 up to a constant: |e|^2 + 2 e.(S - t mu)
        target = total - t * mu
        cost = sq_norms + 2.0 * (E @ target)
        cost[picked] = np.inf
        i = int(np.argmin(cost))
        order.append(i)
        picked[i] = True
        total += _row(E, i)
    return np.asarray(order, dtype=np.int64)


def kcenter_indices(E, k):
    """Indices of ``k`` rows of ``E`` chosen by k-center greedy, in the order picked.

    ``E`` may be a dense array or a sparse matrix.
    """
    E = _as_float64(E)
    mu, sq_norms = _mean_and_sq_norms(E)
    first = int(np.argmin(sq_norms - 2.0 * (E @ mu)))
    order = [first]
    min_d2 = np.maximum(sq_norms + sq_norms[first] - 2.0 * (E @ _row(E, first)), 0.0)
    min_d2[first] = -1.0
    for _ in range(1, k):
        i = int(np.argmax(min_d2))
        order.append(i)
        d2 = np.maximum(sq_norms + sq_norms[i] - 2.0 * (E @ _row(E, i)), 0.0)
        np.minimum(min_d2, d2, out=min_d2)
        min_d2[i] = -1.0  # never pick it again, even among exact duplicates
    return np.asarray(order, dtype=np.int64)


def random_indices(n, k, rng):
    return np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)


class _CoresetDistiller(BaseDistiller):
    """Shared machinery: per-class selection, optional embedding, ``sample_indices_``.

    A coreset selects real rows, so it declares ``sample_indices_`` in its imbalanced-learn
    sampler tags, and it accepts sparse tabular rows.
    """

    _parameter_constraints = {
        **BaseDistiller._parameter_constraints,
        "n_jobs": [Integral, None],
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.sampler_tags.sample_indices = True
        tags.input_tags.sparse = True
        return tags

    def _select(self, E, k, seed):  # pragma: no cover - abstract
        raise NotImplementedError

    def _embed(self, X):
        return X if sparse.issparse(X) else X.reshape(len(X), -1)

    def _distill(self, X, y, key):
        import jax

        E = self._embed(X)
        n_classes = len(self.classes_)
        seeds = np.asarray(jax.random.randint(key, (n_classes,), 0, 2**31 - 1))
        members = [np.flatnonzero(y == c) for c in range(n_classes)]
        picked = Parallel(n_jobs=self.n_jobs)(
            delayed(self._select)(E[rows], self.ipc, int(seed)) for rows, seed in zip(members, seeds))
        indices = np.concatenate([rows[p] for rows, p in zip(members, picked)])
        self.sample_indices_ = indices
        return DistillationResult(X=X[indices], y=y[indices], n_iter=self.ipc)


class RandomDistiller(_CoresetDistiller):
    """Class-balanced random subset: ``ipc`` real rows drawn per class.

    Parameters
    ----------
    ipc : int, default=1
        Rows per class.
    image_shape : tuple or None, default=None
        ``(H, W, C)`` when images are given as 2-D rows.
    n_eval_models : int, default=5
        Networks trained from scratch by :meth:`score`.
    eval_steps : int or "auto", default="auto"
        Training steps of each evaluation network.
    eval_model : flax.linen.Module or None, default=None
        Evaluation network; ``None`` uses the protocol default.
    eval_protocol : str or EvalProtocol, default="library"
        Evaluation protocol of :meth:`score`: "library", "frepo", "rcig", "ratbptt", "dc"
        (:func:`~sklearn_distill.get_protocol`) or an :class:`~sklearn_distill.EvalProtocol`;
        the default is the library's; pass a paper's name to compare a coreset with that
        paper's published baselines.
    n_jobs : int or None, default=None
        Classes selected in parallel through joblib.
    random_state : int, RandomState instance or None, default=None

    Attributes
    ----------
    sample_indices_ : ndarray of int
        Rows of the training data that form the synthetic set.
    synthetic_X_, synthetic_y_, classes_, sampling_strategy_, n_features_in_ :
        See :class:`~sklearn_distill.base.BaseDistiller`.

    Examples
    --------
    >>> from sklearn_distill import RandomDistiller, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> d = RandomDistiller(ipc=3, random_state=0).fit(X, y)
    >>> d.synthetic_X_.shape, d.sampling_strategy_[0]
    ((30, 8, 8, 1), 3)
    """

    def __init__(self, ipc=1, *, image_shape=None, n_eval_models=5, eval_steps="auto",
                 eval_model=None, eval_protocol="library", n_jobs=None, random_state=None):
        self.ipc = ipc
        self.image_shape = image_shape
        self.n_eval_models = n_eval_models
        self.eval_steps = eval_steps
        self.eval_model = eval_model
        self.eval_protocol = eval_protocol
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _select(self, E, k, seed):
        return random_indices(E.shape[0], k, np.random.default_rng(seed))


class _EmbeddingCoreset(_CoresetDistiller):
    _parameter_constraints = {
        **_CoresetDistiller._parameter_constraints,
        "embedding": [None, callable, HasMethods(["transform"]), StrOptions({"input"})],
    }

    def __init__(self, ipc=1, *, embedding=None, image_shape=None, n_eval_models=5, eval_steps="auto",
                 eval_model=None, eval_protocol="library", n_jobs=None, random_state=None):
        self.ipc = ipc
        self.embedding = embedding
        self.image_shape = image_shape
        self.n_eval_models = n_eval_models
        self.eval_steps = eval_steps
        self.eval_model = eval_model
        self.eval_protocol = eval_protocol
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _embed(self, X):
        """Rows in the space where distances are measured: the input, or a given embedding."""
        if self.embedding is None or self.embedding == "input":
            return super()._embed(X)
        Xin = self.layout_.to_input(X)
        E = self.embedding.transform(Xin) if hasattr(self.embedding, "transform") else self.embedding(Xin)
        E = _as_float64(E)
        n = X.shape[0]
        if E.ndim != 2 or E.shape[0] != n:
            raise ValueError(f"`embedding` must map the {n} rows to a 2-D array (n_samples, "
                             f"n_features); got shape {E.shape}.")
        if not np.all(np.isfinite(E.data if sparse.issparse(E) else E)):
            raise ValueError("`embedding` produced NaN or infinite values.")
        return E


_EMBEDDING_DOC = """    embedding : None, "input", callable or transformer, default=None
        Space in which distances are measured: the raw input (``None``/``"input"``), a function
        ``X -> features`` or a fitted transformer's ``transform`` (e.g. a PCA, or a trained
        network's penultimate layer). It receives ``X`` in the layout given to ``fit``."""


class HerdingDistiller(_EmbeddingCoreset):
    __doc__ = f"""Herding: per class, greedily match the mean of the selected rows to the class mean.

    Parameters
    ----------
    ipc : int, default=1
        Rows per class.
{_EMBEDDING_DOC}
    image_shape : tuple or None, default=None
    n_eval_models : int, default=5
    eval_steps : int or "auto", default="auto"
    eval_model : flax.linen.Module or None, default=None
    eval_protocol : str or EvalProtocol, default="library"
        Evaluation protocol of :meth:`score`: "library", "frepo", "rcig", "ratbptt", "dc"
        (:func:`~sklearn_distill.get_protocol`) or an :class:`~sklearn_distill.EvalProtocol`;
        the default is the library's; pass a paper's name to compare a coreset with that
        paper's published baselines.
    n_jobs : int or None, default=None
    random_state : int, RandomState instance or None, default=None
        Only seeds :meth:`score`; the selection itself is deterministic.

    Attributes
    ----------
    sample_indices_ : ndarray of int
        Selected training rows, class by class, in the order herding picked them.

    References
    ----------
    Welling, "Herding dynamical weights to learn", ICML 2009.

    Examples
    --------
    >>> from sklearn_distill import HerdingDistiller, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> d = HerdingDistiller(ipc=2).fit(X, y)
    >>> d.sample_indices_.shape
    (20,)
    """

    def _select(self, E, k, seed):
        return herding_indices(E, k)


class KCenterDistiller(_EmbeddingCoreset):
    __doc__ = f"""K-center greedy: per class, repeatedly add the row farthest from those selected.

    The first row is the one nearest the class mean, so the selection is deterministic.

    Parameters
    ----------
    ipc : int, default=1
        Rows per class.
{_EMBEDDING_DOC}
    image_shape : tuple or None, default=None
    n_eval_models : int, default=5
    eval_steps : int or "auto", default="auto"
    eval_model : flax.linen.Module or None, default=None
    eval_protocol : str or EvalProtocol, default="library"
        Evaluation protocol of :meth:`score`: "library", "frepo", "rcig", "ratbptt", "dc"
        (:func:`~sklearn_distill.get_protocol`) or an :class:`~sklearn_distill.EvalProtocol`;
        the default is the library's; pass a paper's name to compare a coreset with that
        paper's published baselines.
    n_jobs : int or None, default=None
    random_state : int, RandomState instance or None, default=None
        Only seeds :meth:`score`.

    Attributes
    ----------
    sample_indices_ : ndarray of int

    References
    ----------
    Sener & Savarese, "Active learning for convolutional neural networks: a core-set approach",
    ICLR 2018.

    Examples
    --------
    >>> from sklearn_distill import KCenterDistiller, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> KCenterDistiller(ipc=2).fit(X, y).synthetic_y_[:4]
    array([0, 0, 1, 1])
    """

    def _select(self, E, k, seed):
        return kcenter_indices(E, k)
