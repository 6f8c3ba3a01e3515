"""Membership inference: does a trained model reveal which rows it (or its distiller) was trained on?

Dataset distillation is often presented as a privacy aid: a model trained only on a few synthetic
images should leak less about the real training rows than one trained on them directly. This
module measures that leakage with the standard black-box attacks, which see only the model's
predicted probabilities:

* ``"threshold"`` -- the loss attack (Yeom et al. 2018): members tend to have a lower loss, so the
  negated cross-entropy loss of the true class is the membership score;
* ``"entropy"`` -- the modified-entropy attack of Song & Mittal (2021), which combines the
  confidence in the true class with the confidence spread over the others:
  :math:`\\mathrm{Mentr}(p, y) = -(1 - p_y)\\log p_y - \\sum_{i \\ne y} p_i \\log(1 - p_i)`;
* ``"lr"``, ``"mlp"``, ``"rf"``, ``"knn"`` -- trained attackers (logistic regression, a
  multi-layer perceptron, a random forest, k-nearest neighbours) that learn to tell members from
  non-members from per-example features of the model's output.

The trained attackers are evaluated out of fold: the balanced member/non-member set is split by
``StratifiedKFold``, an attacker (tuned by a small grid search run *inside* the training folds)
is fitted on the training folds and scores the held-out fold, so every row's attack score comes
from an attacker that never saw that row.
"""

import warnings
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import Interval, validate_parameter_constraints
from sklearn.utils.validation import check_is_fitted

from ._validation import random_seed

__all__ = ["MembershipInferenceEvaluator", "MembershipInferenceResult", "ATTACKS"]

#: Names of the built-in attacks, in the order they are reported.
ATTACKS = ("threshold", "entropy", "lr", "mlp", "rf", "knn")
_THRESHOLD_ATTACKS = ("threshold", "entropy")
_ATTACK_LABELS = {"threshold": "loss threshold", "entropy": "modified-entropy threshold",
                  "lr": "logistic regression", "mlp": "MLP", "rf": "random forest",
                  "knn": "k-nearest neighbours"}
# Smallest probability used inside logarithms: far below float32 resolution, so it only guards
# against log(0) for classes a model is certain about (or never saw) without changing rankings.
_EPS = 1e-30
# Folds of the grid search nested inside each outer training split.
_INNER_SPLITS = 3
_FPR_TARGETS = (0.001, 0.01)


# --------------------------------------------------------------------------------------------
# Per-example signals
# --------------------------------------------------------------------------------------------

def _true_class_columns(model_classes, y):
    """Column of each label in ``predict_proba``'s output, ``-1`` for a class the model lacks."""
    index = {c: i for i, c in enumerate(np.asarray(model_classes).tolist())}
    return np.asarray([index.get(c, -1) for c in np.asarray(y).tolist()], dtype=np.int64)


def attack_signals(proba, columns):
    """Loss, modified entropy and the attackers' feature matrix from predicted probabilities.

    Parameters
    ----------
    proba : ndarray of shape (n, n_classes)
        The target model's ``predict_proba``.
    columns : ndarray of int, shape (n,)
        Column of each row's true class in ``proba``; ``-1`` for a class the model never saw
        (its probability is then 0: the model cannot predict it).

    Returns
    -------
    loss : ndarray of shape (n,)
        Cross-entropy of the true class.
    mentr : ndarray of shape (n,)
        Song & Mittal's modified entropy.
    features : ndarray of shape (n, 3 * n_classes + 2)
        Probabilities sorted in decreasing order (label-free confidence profile), the probability
        vector in class order, the one-hot true label, the true-class probability and the loss.
        The sorted profile lets an attacker generalise across classes; the class-ordered vector
        and one-hot label let it learn class-specific thresholds.
    """
    proba = np.asarray(proba, dtype=np.float64)
    n, k = proba.shape
    known = columns >= 0
    onehot = np.zeros((n, k))
    onehot[np.flatnonzero(known), columns[known]] = 1.0
    p_true = np.where(known, proba[np.arange(n), np.maximum(columns, 0)], 0.0)
    loss = -np.log(np.maximum(p_true, _EPS))
    log_one_minus = np.log(np.maximum(1.0 - proba, _EPS))
    others = -np.sum(proba * log_one_minus * (1.0 - onehot), axis=1)
    mentr = -(1.0 - p_true) * np.log(np.maximum(p_true, _EPS)) + others
    features = np.column_stack([-np.sort(-proba, axis=1), proba, onehot, p_true, loss])
    return loss, mentr, features


def _default_attacker(name, random_state, n_train):
    """A built-in attacker and its (small) grid, sized for ``n_train`` inner-training rows."""
    if name == "lr":
        est = Pipeline([("scale", StandardScaler()),
                        ("clf", LogisticRegression(max_iter=1000))])
        grid = {"clf__C": [0.01, 1.0, 100.0]}
    elif name == "mlp":
        # Early stopping on a 10 % validation split bounds the cost of each fit on large sets;
        # on small ones that split is too noisy to stop on, and fits are cheap anyway.
        est = Pipeline([("scale", StandardScaler()),
                        ("clf", MLPClassifier(hidden_layer_sizes=(64,), max_iter=200,
                                              early_stopping=n_train >= 1000,
                                              random_state=random_state))])
        grid = {"clf__alpha": [1e-4, 1e-2]}
    elif name == "rf":
        est = RandomForestClassifier(n_estimators=50, random_state=random_state)
        grid = {"min_samples_leaf": [1, 10]}
    elif name == "knn":
        est = Pipeline([("scale", StandardScaler()), ("clf", KNeighborsClassifier())])
        # Neighbourhoods larger than the inner training folds are impossible: drop them.
        ks = [k for k in (5, 25, 75) if k <= n_train] or [1]
        grid = {"clf__n_neighbors": ks}
    else:  # pragma: no cover - guarded by validation
        raise ValueError(name)
    return est, grid


def _fit_score_fold(name, estimator, grid, features, is_member, train, test, inner_seed):
    """Fit one attacker on ``train`` (grid search nested inside it) and score ``test``."""
    if grid:
        inner = StratifiedKFold(_INNER_SPLITS, shuffle=True, random_state=inner_seed)
        estimator = GridSearchCV(estimator, grid, scoring="roc_auc", cv=inner)
    with warnings.catch_warnings():
        # An attacker stopped at max_iter is still a valid (if weaker) attacker, and the grid
        # search already compares it with the others; dozens of repeated warnings would only
        # bury the user's own.
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(features[train], is_member[train])
    proba = estimator.predict_proba(features[test])
    member_col = int(np.flatnonzero(np.asarray(estimator.classes_) == 1)[0])
    best = getattr(estimator, "best_params_", None)
    return name, test, proba[:, member_col], best


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------

def tpr_at_fpr(fpr, tpr, target):
    """True-positive rate at a false-positive rate, linearly interpolated on the ROC curve.

    Takes the highest TPR reached at ``fpr <= target`` and moves along the segment to the next
    ROC point, so vertical runs of the curve (tied FPR) are handled without ambiguity.

    Examples
    --------
    >>> tpr_at_fpr([0.0, 0.5, 1.0], [0.0, 0.9, 1.0], 0.25)
    0.45
    """
    fpr, tpr = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    i = int(np.searchsorted(fpr, target, side="right")) - 1
    if i < 0:
        return 0.0
    if i >= len(fpr) - 1:
        return float(tpr[-1])
    t = (target - fpr[i]) / (fpr[i + 1] - fpr[i])
    return float(tpr[i] + t * (tpr[i + 1] - tpr[i]))


def _metrics(is_member, score):
    fpr, tpr, _ = roc_curve(is_member, score, drop_intermediate=False)
    return {"auc": float(roc_auc_score(is_member, score)),
            "advantage": float(np.max(np.abs(tpr - fpr))),
            "tpr_at_0.1%_fpr": tpr_at_fpr(fpr, tpr, _FPR_TARGETS[0]),
            "tpr_at_1%_fpr": tpr_at_fpr(fpr, tpr, _FPR_TARGETS[1])}, (fpr, tpr)


# --------------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------------

@dataclass
class MembershipInferenceResult:
    """Outcome of :meth:`MembershipInferenceEvaluator.evaluate`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per attack (index ``attack``), columns ``auc``, ``advantage``,
        ``tpr_at_0.1%_fpr``, ``tpr_at_1%_fpr``.
    scores : dict of str to ndarray
        Membership score of every row of the balanced set per attack (higher = more likely a
        member); out of fold for the trained attackers.
    is_member : ndarray of int
        1 for a member row, 0 for a non-member, aligned with ``scores``.
    folds : ndarray of int
        Outer fold whose held-out part each row belongs to (its trained-attack score comes
        from attackers fitted on the other folds).
    roc : dict of str to (ndarray, ndarray)
        ``(fpr, tpr)`` of each attack's ROC curve.
    best_params : dict of str to list
        The grid-search choice of each trained attacker, one entry per outer fold.
    member_accuracy, nonmember_accuracy : float
        The target model's accuracy on the evaluated members and non-members (the
        generalisation gap that the attacks exploit).
    n_members, n_nonmembers : int
        Rows per side after balancing.
    """

    table: pd.DataFrame
    scores: dict
    is_member: np.ndarray
    folds: np.ndarray
    roc: dict
    best_params: dict = field(default_factory=dict)
    member_accuracy: float = float("nan")
    nonmember_accuracy: float = float("nan")
    n_members: int = 0
    n_nonmembers: int = 0

    def to_dict(self):
        """A JSON-serialisable summary: the metrics per attack, accuracies and sizes."""
        return {"attacks": {name: {k: float(v) for k, v in row.items()}
                            for name, row in self.table.to_dict(orient="index").items()},
                "member_accuracy": float(self.member_accuracy),
                "nonmember_accuracy": float(self.nonmember_accuracy),
                "n_members": int(self.n_members), "n_nonmembers": int(self.n_nonmembers),
                "best_params": {k: [None if p is None else {a: repr(b) if isinstance(b, tuple) else b
                                                            for a, b in p.items()} for p in v]
                                for k, v in self.best_params.items()}}

    def plot_roc(self, ax=None, log_scale=True):
        """Plot every attack's ROC curve; returns the matplotlib Figure.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Axes to draw on; ``None`` creates a new Figure (without pyplot, so nothing global
            is touched and the figure is not shown unless the caller does so).
        log_scale : bool, default=True
            Log-log axes, which make the low-FPR regime (where an attack is dangerous) visible.

        Returns
        -------
        matplotlib.figure.Figure
        """
        if ax is None:
            from matplotlib.figure import Figure

            fig = Figure(figsize=(5, 4.5), layout="constrained")
            ax = fig.add_subplot()
        else:
            fig = ax.figure
        floor = 1.0 / max(len(self.is_member), 1)
        for name, (fpr, tpr) in self.roc.items():
            label = f"{_ATTACK_LABELS.get(name, name)} (AUC {self.table.loc[name, 'auc']:.3f})"
            if log_scale:
                # Zero rates cannot be drawn on log axes; clip them to one row's worth.
                ax.loglog(np.maximum(fpr, floor), np.maximum(tpr, floor), label=label)
            else:
                ax.plot(fpr, tpr, label=label)
        lo = floor if log_scale else 0.0
        ax.plot([lo, 1], [lo, 1], color="grey", linestyle="--", linewidth=1, label="chance")
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.set_title("Membership inference ROC")
        ax.legend(fontsize="small")
        return fig

    def __str__(self):
        return self.table.to_string(float_format=lambda v: f"{v:.3f}")


# --------------------------------------------------------------------------------------------
# The evaluator
# --------------------------------------------------------------------------------------------

class MembershipInferenceEvaluator:
    """Black-box membership-inference attacks against any fitted probabilistic classifier.

    Given a fitted model with ``predict_proba`` (a
    :class:`~sklearn_distill.DistilledClassifier`, a :class:`~sklearn_distill.NeuralNetClassifier`
    trained on real data, any scikit-learn classifier), rows known to be in its training data
    ("members") and rows known not to be ("non-members"), :meth:`evaluate` runs each attack and
    reports how well it separates the two.

    For a model trained on a distilled set, the **members are the real rows given to the
    distiller** (its training data), not the synthetic rows: the question is whether the
    distillation leaks which real rows it was built from.

    The larger side is subsampled (with ``random_state``) so that members and non-members are
    balanced and an AUC of 0.5 means guessing. The threshold attacks need no training: their score
    is the negated loss / negated modified entropy, and their ROC runs over all rows. The trained
    attackers see, per row, the probabilities sorted in decreasing order, the probability vector,
    the one-hot true label, the true-class probability and the loss; each is tuned by a small grid
    search (3-fold, ROC AUC) nested inside the training folds of an outer
    ``StratifiedKFold(n_splits)``, and scores only its held-out fold.

    Parameters
    ----------
    attacks : tuple or list, default=("threshold", "entropy", "lr", "mlp", "rf", "knn")
        Attacks to run, each a built-in name or a ``(name, classifier)`` pair: a custom
        attacker (anything with ``fit`` and ``predict_proba``, e.g. a ``GridSearchCV``) trained
        out of fold on the same features as the built-in ones.
    n_splits : int, default=5
        Outer folds for the trained attackers (at least 2).
    n_jobs : int or None, default=None
        Attacker fits (attack x fold) run in parallel through joblib.
    random_state : int, RandomState instance or None, default=None
        Seeds the balancing subsample, the folds and the attackers; ``None`` draws fresh
        entropy (never NumPy's global generator).

    See Also
    --------
    MembershipInferenceResult : the result, with ``.table``, ``.to_dict()``, ``.plot_roc()``.

    Notes
    -----
    Reported per attack: ROC AUC, the attacker advantage :math:`\\max|TPR - FPR|` over all
    thresholds (for the threshold attacks this picks the best threshold with hindsight, an upper
    bound on what an attacker that must choose one would get), and the TPR at 0.1 % and 1 % FPR,
    interpolated on the ROC curve. With fewer than 1000 rows per side, 0.1 % FPR is below one
    non-member row, so that figure is coarse (interpolated between the curve's first points);
    likewise 1 % FPR with fewer than 100 rows per side.

    References
    ----------
    Song & Mittal, "Systematic evaluation of privacy risks of machine learning models",
    USENIX Security 2021. Yeom, Giacomelli, Fredrikson & Jha, "Privacy risk in machine learning:
    analyzing the connection to overfitting", CSF 2018. Shokri, Stronati, Song & Shmatikov,
    "Membership inference attacks against machine learning models", S&P 2017.

    Examples
    --------
    A fully grown decision tree memorises noisy labels, and the loss attack notices:

    >>> import numpy as np
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> from sklearn_distill import MembershipInferenceEvaluator
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4)); y = (X[:, 0] + rng.normal(size=200) > 0).astype(int)
    >>> model = DecisionTreeClassifier(random_state=0).fit(X[:100], y[:100])
    >>> mia = MembershipInferenceEvaluator(attacks=("threshold", "lr"), n_splits=3, random_state=0)
    >>> result = mia.evaluate(model, X[:100], y[:100], X[100:], y[100:])
    >>> list(result.table.index), bool(result.table.loc["threshold", "auc"] > 0.6)
    (['threshold', 'lr'], True)
    """

    _parameter_constraints = {
        "attacks": [list, tuple],
        "n_splits": [Interval(Integral, 2, None, closed="left")],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
    }

    def __init__(self, attacks=ATTACKS, n_splits=5, n_jobs=None, random_state=None):
        self.attacks = attacks
        self.n_splits = n_splits
        self.n_jobs = n_jobs
        self.random_state = random_state

    # Not a BaseEstimator: it has no fit and is not a model, so scikit-learn's estimator checks
    # do not apply; these three methods give it the same parameter handling all the same.
    def get_params(self, deep=True):
        """Parameters of this evaluator, as for a scikit-learn estimator."""
        return {"attacks": self.attacks, "n_splits": self.n_splits, "n_jobs": self.n_jobs,
                "random_state": self.random_state}

    def set_params(self, **params):
        """Set parameters, as for a scikit-learn estimator; returns ``self``."""
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"Invalid parameter {key!r} for {type(self).__name__}; valid "
                                 f"parameters are {sorted(valid)}.")
            setattr(self, key, value)
        return self

    def __repr__(self):
        defaults = {"attacks": ATTACKS, "n_splits": 5, "n_jobs": None, "random_state": None}
        changed = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults[k])
        return f"{type(self).__name__}({changed})"

    def _check_attacks(self):
        """``[(name, estimator or None)]``; unknown names and malformed entries raise ValueError."""
        if len(self.attacks) == 0:
            raise ValueError("`attacks` must name at least one attack; got an empty sequence.")
        out = []
        for item in self.attacks:
            if isinstance(item, str):
                if item not in ATTACKS:
                    raise ValueError(f"Unknown attack {item!r} in `attacks`; valid names are "
                                     f"{list(ATTACKS)} (or a (name, classifier) pair).")
                out.append((item, None))
            elif (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                  and hasattr(item[1], "fit") and hasattr(item[1], "predict_proba")):
                out.append(item)
            else:
                raise ValueError(f"Each entry of `attacks` must be one of {list(ATTACKS)} or a "
                                 f"(name, classifier with fit/predict_proba) pair; got {item!r}.")
        names = [name for name, _ in out]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"`attacks` names {duplicated} more than once.")
        return out

    @staticmethod
    def _check_side(X, y, name):
        if X is None or y is None:
            raise ValueError(f"`X_{name}` and `y_{name}` are required.")
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"`y_{name}` must be 1-D; got shape {y.shape}.")
        n = X.shape[0] if hasattr(X, "shape") else len(X)
        if n != len(y):
            raise ValueError(f"`X_{name}` has {n} rows but `y_{name}` has {len(y)} labels.")
        if n == 0:
            raise ValueError(f"`X_{name}` is empty.")
        return y

    def evaluate(self, model, X_member, y_member, X_nonmember, y_nonmember):
        """Attack ``model`` and measure how well each attack tells members from non-members.

        Parameters
        ----------
        model : fitted classifier
            Must have ``predict_proba`` and ``classes_``. Labels it never saw count as
            probability 0 for the true class.
        X_member, y_member : array-like
            Rows the model (or its distiller) was trained on, in the layout ``model`` accepts.
        X_nonmember, y_nonmember : array-like
            Rows from the same distribution that it never saw (e.g. a held-out split).

        Returns
        -------
        MembershipInferenceResult
        """
        validate_parameter_constraints(self._parameter_constraints, self.get_params(),
                                       caller_name=type(self).__name__)
        attacks = self._check_attacks()
        if not hasattr(model, "predict_proba"):
            raise ValueError(f"`model` must have predict_proba; {type(model).__name__} has not.")
        check_is_fitted(model)  # NotFittedError is a ValueError
        classes = getattr(model, "classes_", None)
        if classes is None:
            raise ValueError("`model` has no `classes_`, so its probability columns cannot be "
                             "matched to the labels.")
        y_mem = self._check_side(X_member, y_member, "member")
        y_non = self._check_side(X_nonmember, y_nonmember, "nonmember")

        # One seed stream for everything: subsample, outer folds, inner folds, attackers.
        # (None draws fresh OS entropy, never NumPy's global generator.)
        rng = np.random.RandomState(random_seed(self.random_state))
        n = min(len(y_mem), len(y_non))
        if n < self.n_splits:
            raise ValueError(f"Too few rows: {n} per side after balancing, fewer than "
                             f"`n_splits`={self.n_splits}.")
        mem_idx = np.sort(rng.choice(len(y_mem), n, replace=False)) if len(y_mem) > n else np.arange(n)
        non_idx = np.sort(rng.choice(len(y_non), n, replace=False)) if len(y_non) > n else np.arange(n)

        def proba_of(X, idx):
            X = X.iloc[idx] if hasattr(X, "iloc") else np.asarray(X)[idx]
            p = np.asarray(model.predict_proba(X), dtype=np.float64)
            if p.shape != (len(idx), len(classes)):
                raise ValueError(f"`model.predict_proba` returned shape {p.shape}; expected "
                                 f"({len(idx)}, {len(classes)}).")
            return p

        proba = np.concatenate([proba_of(X_member, mem_idx), proba_of(X_nonmember, non_idx)])
        y_all = np.concatenate([y_mem[mem_idx], y_non[non_idx]])
        is_member = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])
        columns = _true_class_columns(classes, y_all)
        loss, mentr, features = attack_signals(proba, columns)
        correct = np.asarray(classes)[np.argmax(proba, axis=1)] == y_all

        scores = {}
        for name, _ in attacks:
            if name == "threshold":
                scores[name] = -loss
            elif name == "entropy":
                scores[name] = -mentr

        outer = StratifiedKFold(self.n_splits, shuffle=True, random_state=rng.randint(2**31 - 1))
        splits = list(outer.split(features, is_member))
        folds = np.empty(len(is_member), dtype=np.int64)
        for k, (_, test) in enumerate(splits):
            folds[test] = k
        attacker_seed, inner_seed = rng.randint(2**31 - 1, size=2)
        trained = [name for name, custom in attacks if name not in _THRESHOLD_ATTACKS or custom is not None]
        smallest = min(int(np.bincount(is_member[train], minlength=2).min()) for train, _ in splits)
        if trained and smallest < _INNER_SPLITS:
            raise ValueError(f"Too few rows for the trained attacks {trained}: {n} per side leaves "
                             f"{smallest} per side in a training fold of `n_splits`={self.n_splits}, "
                             f"fewer than the {_INNER_SPLITS} inner grid-search folds need.")
        # Smallest inner training fold, which bounds the neighbourhood size of the KNN grid.
        n_inner_train = int(min(len(train) for train, _ in splits) * (_INNER_SPLITS - 1) / _INNER_SPLITS)
        jobs = []
        for name, custom in attacks:
            if name in _THRESHOLD_ATTACKS and custom is None:
                continue
            for train, test in splits:
                if custom is None:
                    est, grid = _default_attacker(name, int(attacker_seed), n_inner_train)
                else:
                    est, grid = clone(custom), None
                jobs.append(delayed(_fit_score_fold)(name, est, grid, features, is_member, train,
                                                     test, int(inner_seed)))
        best_params = {}
        for name, test, score, best in Parallel(n_jobs=self.n_jobs)(jobs):
            scores.setdefault(name, np.full(len(is_member), np.nan))[test] = score
            best_params.setdefault(name, []).append(best)

        rows, roc = {}, {}
        for name, _ in attacks:
            rows[name], roc[name] = _metrics(is_member, scores[name])
        table = pd.DataFrame.from_dict(rows, orient="index")
        table.index.name = "attack"
        return MembershipInferenceResult(
            table=table, scores={name: scores[name] for name, _ in attacks}, is_member=is_member,
            folds=folds, roc=roc, best_params=best_params,
            member_accuracy=float(np.mean(correct[:n])), nonmember_accuracy=float(np.mean(correct[n:])),
            n_members=n, n_nonmembers=n)
