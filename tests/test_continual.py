"""Class-incremental evaluation with distilled memories."""

import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.linear_model import LogisticRegression

from sklearn_distill import (ClassIncrementalResult, ConvNet, HerdingDistiller, NeuralNetClassifier,
                             RandomDistiller, class_incremental_evaluation, load_digits_images)
from sklearn_distill._training import centred_one_hot
from sklearn_distill._labels import label_kind, loss_for_labels
from sklearn_distill.continual import _map_soft_labels


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images(return_X_y=True)
    return X[:1200], y[:1200], X[1200:], y[1200:]


def _rows(X):
    return X.reshape(len(X), -1)


def test_one_accuracy_per_step_with_a_growing_memory(digits):
    X_tr, y_tr, X_te, y_te = digits
    result = class_incremental_evaluation(HerdingDistiller(ipc=3), _rows(X_tr), y_tr, _rows(X_te), y_te,
                                          n_steps=5, estimator=LogisticRegression(max_iter=300),
                                          random_state=0)
    assert isinstance(result, ClassIncrementalResult)
    table = result.table
    assert table["step"].tolist() == [1, 2, 3, 4, 5]
    assert table["n_classes_seen"].tolist() == [2, 4, 6, 8, 10]
    assert table["memory_size"].tolist() == [6, 12, 18, 24, 30]
    assert table["accuracy"].between(0, 1).all() and table["accuracy"].iloc[0] > 0.8
    # Each step is tested on the test rows of exactly the classes seen so far.
    for _, row in table.iterrows():
        assert row["n_test"] == np.isin(y_te, row["classes_seen"]).sum()
    assert sorted(result.class_order.tolist()) == list(range(10))
    assert result.labels == "hard" and result.final_accuracy == table["accuracy"].iloc[-1]
    assert isinstance(result.plot(), Figure)
    assert result.to_dict()["steps"][0]["memory_size"] == 6


def test_neural_network_on_images(digits):
    X_tr, y_tr, X_te, y_te = digits
    net = NeuralNetClassifier(ConvNet(width=8, depth=2), n_steps=150, learning_rate=3e-3,
                              augment="none", random_state=0)
    result = class_incremental_evaluation(HerdingDistiller(ipc=5), X_tr, y_tr, X_te, y_te, n_steps=2,
                                          class_order=np.arange(10), estimator=net)
    assert result.table["new_classes"].tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert result.table["memory_size"].tolist() == [25, 50]
    assert result.final_accuracy > 0.5  # 5 herded images per class, chance is 0.1


def test_class_order_is_reproducible(digits):
    X_tr, y_tr, X_te, y_te = digits
    kw = dict(n_steps=2, estimator=LogisticRegression(max_iter=200), random_state=4)
    a = class_incremental_evaluation(RandomDistiller(ipc=2, random_state=0), _rows(X_tr), y_tr,
                                     _rows(X_te), y_te, **kw)
    b = class_incremental_evaluation(RandomDistiller(ipc=2, random_state=0), _rows(X_tr), y_tr,
                                     _rows(X_te), y_te, **kw)
    np.testing.assert_array_equal(a.class_order, b.class_order)
    assert a.table["accuracy"].tolist() == b.table["accuracy"].tolist()


class _SoftHerding(HerdingDistiller):
    """Herding that also reports (centred one-hot) learned labels, like FRePo does."""

    def _distill(self, X, y, key):
        result = super()._distill(X, y, key)
        return result._replace(soft_labels=centred_one_hot(result.y, len(self.classes_)))


_SOFT_SEEN = []


class _RecordingNet(NeuralNetClassifier):
    """Records the targets it is given instead of training."""

    def fit(self, X, y, soft_labels=None):
        _SOFT_SEEN.append((np.asarray(y), None if soft_labels is None else np.asarray(soft_labels)))
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


def test_learned_labels_are_mapped_into_the_seen_classes(digits):
    X_tr, y_tr, X_te, y_te = digits
    _SOFT_SEEN.clear()
    result = class_incremental_evaluation(_SoftHerding(ipc=1), X_tr, y_tr, X_te, y_te, n_steps=2,
                                          class_order=[9, 8, 7, 6, 5, 0, 1, 2, 3, 4],
                                          estimator=_RecordingNet())
    assert result.labels == "soft"
    (y1, s1), (y2, s2) = _SOFT_SEEN
    assert s1.shape == (5, 5) and s2.shape == (10, 10)
    # Columns follow np.unique(y) of the memory; each row peaks at its own class and the other
    # step's classes get the row's minimum (-1/5 here).
    assert (np.unique(y2)[s2.argmax(axis=1)] == y2).all()
    first = np.isin(y2, [5, 6, 7, 8, 9])
    np.testing.assert_allclose(s2[first][:, :5], -0.2)
    # labels="hard" ignores learned labels.
    _SOFT_SEEN.clear()
    hard = class_incremental_evaluation(_SoftHerding(ipc=1), X_tr, y_tr, X_te, y_te, n_steps=2,
                                        estimator=_RecordingNet(), labels="hard", random_state=0)
    assert hard.labels == "hard" and all(s is None for _, s in _SOFT_SEEN)


def test_map_soft_labels():
    soft = np.array([[0.8, -0.3], [-0.1, 0.6]])
    out = _map_soft_labels(soft, np.array([2, 5]), np.array([1, 2, 5, 7]))
    np.testing.assert_allclose(out, [[-0.3, 0.8, -0.3, -0.3], [-0.1, -0.1, 0.6, -0.1]])


def test_map_soft_labels_keeps_probabilities_distributions():
    # Learned probabilities (RaT-BPTT) must stay distributions, so they train with cross-entropy.
    soft = np.array([[0.75, 0.25], [0.5, 0.5]])
    out = _map_soft_labels(soft, np.array([2, 5]), np.array([1, 2, 5, 7]))
    np.testing.assert_allclose(out, [[0.0, 0.75, 0.25, 0.0], [0.0, 0.5, 0.5, 0.0]])
    assert label_kind(out) == "probabilities" and loss_for_labels(out) == "ce"


@pytest.mark.parametrize("kwargs, match", [
    ({"n_steps": 6}, "n_steps"),
    ({"n_steps": 0}, "n_steps"),
    ({"class_order": [0, 1, 2]}, "class_order"),
    ({"class_order": list(range(9)) + [11]}, "class_order"),
    ({"labels": "soft"}, "labels"),
    ({"estimator": object()}, "estimator"),
])
def test_bad_parameters(digits, kwargs, match):
    X_tr, y_tr, X_te, y_te = digits
    with pytest.raises(ValueError, match=match):
        class_incremental_evaluation(HerdingDistiller(), _rows(X_tr), y_tr, _rows(X_te), y_te, **kwargs)


def test_bad_inputs(digits):
    X_tr, y_tr, X_te, y_te = digits
    with pytest.raises(ValueError, match="y_test"):
        class_incremental_evaluation(HerdingDistiller(), _rows(X_tr), y_tr, _rows(X_te), y_te + 20)
    with pytest.raises(ValueError, match="y_train"):
        class_incremental_evaluation(HerdingDistiller(), _rows(X_tr), y_tr[:-1], _rows(X_te), y_te)
    with pytest.raises(ValueError, match="distiller"):
        class_incremental_evaluation("herding", _rows(X_tr), y_tr, _rows(X_te), y_te)
