"""Membership-inference attacks (MembershipInferenceEvaluator)."""

import json

import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import LinearSVC

from sklearn_distill import (DistilledClassifier, HerdingDistiller, MembershipInferenceEvaluator,
                             MembershipInferenceResult, load_digits_images)
from sklearn_distill.privacy import ATTACKS, attack_signals, tpr_at_fpr


def _noisy_data(n, seed):
    """Two Gaussian features and labels that are 30 % noise: only a memoriser fits them."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    y = (X[:, 0] > 0).astype(int)
    flip = rng.random(n) < 0.3
    return X, np.where(flip, 1 - y, y)


@pytest.fixture(scope="module")
def noisy():
    X, y = _noisy_data(600, 0)
    return X[:300], y[:300], X[300:], y[300:]


@pytest.fixture(scope="module")
def memorised(noisy):
    X_m, y_m, X_n, y_n = noisy
    # An unpruned forest fits its (noisy) training labels almost perfectly.
    model = RandomForestClassifier(n_estimators=30, random_state=0).fit(X_m, y_m)
    return MembershipInferenceEvaluator(n_splits=2, random_state=0).evaluate(model, X_m, y_m, X_n, y_n)


def test_attacks_detect_a_memorising_model(memorised):
    assert list(memorised.table.index) == list(ATTACKS)
    assert list(memorised.table.columns) == ["auc", "advantage", "tpr_at_0.1%_fpr", "tpr_at_1%_fpr"]
    # Training accuracy near 1 against ~0.6 on fresh rows: a large gap that every attack sees.
    assert memorised.member_accuracy > 0.95 and memorised.nonmember_accuracy < 0.75
    assert (memorised.table["auc"] > 0.75).all(), memorised.table
    assert (memorised.table["advantage"] > 0.3).all()


def test_attacks_stay_near_chance_when_membership_is_irrelevant(noisy):
    X_m, y_m, X_n, y_n = noisy
    X_other, y_other = _noisy_data(300, 1)
    # Neither model saw the "members": membership carries no signal at all. (The dummy's
    # outputs are constant, so the cheap attacks suffice to show it.)
    for model, attacks in ((LogisticRegression().fit(X_other, y_other), ATTACKS),
                           (DummyClassifier(strategy="prior").fit(X_other, y_other),
                            ("threshold", "entropy", "knn"))):
        mia = MembershipInferenceEvaluator(attacks=attacks, n_splits=2, random_state=0)
        table = mia.evaluate(model, X_m, y_m, X_n, y_n).table
        # With 300 rows per side the null AUC has a standard deviation of about
        # sqrt(601 / (12 * 300 * 300)) = 0.024; 0.1 is over four of them.
        assert (np.abs(table["auc"] - 0.5) < 0.1).all(), table


_RECORD = []


class _RecordingAttacker(ClassifierMixin, BaseEstimator):
    """Remembers the feature rows it was fitted on and the rows it was asked to score."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.seen_ = {row.tobytes() for row in np.asarray(X)}
        return self

    def predict_proba(self, X):
        X = np.asarray(X)
        _RECORD.append((self.seen_, [row.tobytes() for row in X]))
        return np.full((len(X), 2), 0.5)


def test_scores_are_out_of_fold(noisy):
    X_m, y_m, X_n, y_n = noisy
    _RECORD.clear()
    # A graded model so that every row has distinct features.
    model = LogisticRegression().fit(X_m, y_m)
    result = MembershipInferenceEvaluator(attacks=[("spy", _RecordingAttacker())], n_splits=4,
                                          random_state=0).evaluate(model, X_m, y_m, X_n, y_n)
    assert len(_RECORD) == 4
    scored = []
    for seen, rows in _RECORD:
        assert not seen.intersection(rows), "an attacker scored a row it was trained on"
        scored.extend(rows)
    # Every one of the 600 rows is scored exactly once, by the model of its own fold.
    assert len(scored) == len(set(scored)) == 600
    assert np.bincount(result.folds).tolist() == [150] * 4
    assert result.table.loc["spy", "auc"] == 0.5


def test_balancing_and_reproducibility(noisy):
    X_m, y_m, X_n, y_n = noisy
    model = KNeighborsClassifier(n_neighbors=1).fit(X_m, y_m)
    mia = MembershipInferenceEvaluator(attacks=("threshold", "knn"), n_splits=3, random_state=3)
    a = mia.evaluate(model, X_m, y_m, X_n[:120], y_n[:120])
    b = mia.evaluate(model, X_m, y_m, X_n[:120], y_n[:120])
    assert a.n_members == a.n_nonmembers == 120 and len(a.is_member) == 240
    assert a.is_member.sum() == 120
    np.testing.assert_array_equal(a.table.to_numpy(), b.table.to_numpy())
    assert mia.random_state == 3 and mia.attacks == ("threshold", "knn")  # parameters untouched


def test_metrics_on_a_perfect_and_a_useless_score():
    fpr, tpr = np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0])
    assert tpr_at_fpr(fpr, tpr, 0.001) == 1.0
    # On the diagonal, TPR equals the FPR asked for.
    assert tpr_at_fpr([0.0, 1.0], [0.0, 1.0], 0.01) == pytest.approx(0.01)


def test_signals_match_the_definitions():
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])
    loss, mentr, features = attack_signals(proba, np.array([0, -1]))
    assert loss[0] == pytest.approx(-np.log(0.7))
    expected = -(0.3) * np.log(0.7) - 0.2 * np.log(0.8) - 0.1 * np.log(0.9)
    assert mentr[0] == pytest.approx(expected)
    # A label the model never saw has true-class probability 0: the largest possible loss.
    assert loss[1] > 50 and features.shape == (2, 3 * 3 + 2)
    np.testing.assert_allclose(features[0, :3], [0.7, 0.2, 0.1])


def test_result_serialises_and_plots(memorised):
    d = memorised.to_dict()
    json.dumps(d)
    assert set(d["attacks"]) == set(ATTACKS) and d["n_members"] == 300
    assert set(memorised.best_params) == {"lr", "mlp", "rf", "knn"}
    fig = memorised.plot_roc()
    assert isinstance(fig, Figure)
    assert len(fig.axes[0].get_lines()) == len(ATTACKS) + 1  # one per attack, plus chance
    assert isinstance(memorised.plot_roc(log_scale=False), Figure)
    assert isinstance(memorised, MembershipInferenceResult) and "threshold" in str(memorised)


def test_distilled_classifier_leaks_less_than_a_memoriser():
    X, y = load_digits_images(return_X_y=True)
    X = X.reshape(len(X), -1)
    X_m, y_m, X_n, y_n = X[:400], y[:400], X[1000:1400], y[1000:1400]
    mia = MembershipInferenceEvaluator(attacks=("threshold", "knn"), n_splits=3, random_state=0)
    full = mia.evaluate(RandomForestClassifier(n_estimators=30, random_state=0).fit(X_m, y_m),
                        X_m, y_m, X_n, y_n)
    distilled = DistilledClassifier(HerdingDistiller(ipc=2), LogisticRegression(max_iter=300)).fit(X_m, y_m)
    small = mia.evaluate(distilled, X_m, y_m, X_n, y_n)
    assert small.table.loc["threshold", "auc"] < full.table.loc["threshold", "auc"]
    assert np.isfinite(small.table.to_numpy()).all()


@pytest.mark.parametrize("params, match", [
    ({"attacks": ("threshold", "nope")}, "nope"),
    ({"attacks": ()}, "attacks"),
    ({"attacks": ("lr", "lr")}, "more than once"),
    ({"attacks": [("x", object())]}, "attacks"),
    ({"n_splits": 1}, "n_splits"),
    ({"random_state": "seed"}, "random_state"),
])
def test_bad_parameters(noisy, params, match):
    X_m, y_m, X_n, y_n = noisy
    model = LogisticRegression().fit(X_m, y_m)
    with pytest.raises(ValueError, match=match):
        MembershipInferenceEvaluator(**params).evaluate(model, X_m, y_m, X_n, y_n)


def test_bad_inputs(noisy):
    X_m, y_m, X_n, y_n = noisy
    mia = MembershipInferenceEvaluator(attacks=("threshold",), n_splits=3)
    with pytest.raises(ValueError, match="predict_proba"):
        mia.evaluate(LinearSVC().fit(X_m, y_m), X_m, y_m, X_n, y_n)
    with pytest.raises(ValueError, match="fitted"):
        mia.evaluate(LogisticRegression(), X_m, y_m, X_n, y_n)
    model = LogisticRegression().fit(X_m, y_m)
    with pytest.raises(ValueError, match="y_member"):
        mia.evaluate(model, X_m, y_m[:-1], X_n, y_n)
    with pytest.raises(ValueError, match="X_nonmember"):
        mia.evaluate(model, X_m, y_m, X_n[:0], y_n[:0])
    with pytest.raises(ValueError, match="n_splits"):
        mia.evaluate(model, X_m, y_m, X_n[:2], y_n[:2])
    # Trained attackers also need enough rows for the grid search inside each training fold.
    with pytest.raises(ValueError, match="inner grid-search"):
        MembershipInferenceEvaluator(attacks=("lr",), n_splits=2).evaluate(model, X_m, y_m, X_n[:4], y_n[:4])


def test_parameters_like_an_estimator():
    mia = MembershipInferenceEvaluator(n_splits=3)
    assert mia.get_params()["n_splits"] == 3 and repr(mia) == "MembershipInferenceEvaluator(n_splits=3)"
    assert mia.set_params(random_state=1).random_state == 1
    with pytest.raises(ValueError, match="bogus"):
        mia.set_params(bogus=1)
