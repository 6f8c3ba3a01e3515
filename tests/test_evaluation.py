import pickle

import jax
import numpy as np
import pytest
from sklearn.datasets import make_blobs

from sklearn_distill import (MLP, ConvNet, DistilledClassifier, HerdingDistiller, NeuralNetClassifier,
                             evaluate, load_digits_images)
from sklearn_distill._trainer import predict_networks, train_networks
from sklearn_distill.evaluation import default_eval_model, default_eval_steps
from sklearn_distill.networks import with_num_classes

FAST_MLP = dict(model=MLP(hidden_sizes=(32,)), n_steps=150, learning_rate=1e-2)


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=120, centers=3, n_features=4, random_state=0)
    return X, y


def test_networks_are_trained_independently_and_at_once(blobs):
    X, y = blobs
    model = with_num_classes(MLP(hidden_sizes=(8,)), 3)
    targets = np.eye(3)[y]
    variables, losses = train_networks(jax.random.PRNGKey(0), model, X, targets, n_models=3, n_steps=60,
                                       loss="ce", learning_rate=1e-2)
    kernels = variables["params"]["dense_0"]["kernel"]
    assert kernels.shape[0] == 3 and losses.shape == (3, 60)
    assert not np.allclose(kernels[0], kernels[1])  # different initialisations
    assert np.all(losses[:, -1] < losses[:, 0])  # every network learned
    logits = predict_networks(model, variables, X)
    assert logits.shape == (3, len(X), 3)


def test_prediction_does_not_depend_on_batch_composition(blobs):
    X, y = blobs
    clf = NeuralNetClassifier(**FAST_MLP, random_state=0).fit(X, y)
    full = clf.predict_proba(X)
    np.testing.assert_array_equal(full[:7], clf.predict_proba(X[:7]))


def test_classifier_learns_and_pickles(blobs):
    X, y = blobs
    clf = NeuralNetClassifier(**FAST_MLP, random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.95
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone.predict_proba(X), clf.predict_proba(X))
    assert all(isinstance(a, np.ndarray) for a in jax.tree.leaves(clf.variables_))


def test_soft_labels_use_mse(blobs):
    X, y = blobs
    soft = np.eye(3)[y] * 2.0 - 0.5
    clf = NeuralNetClassifier(**FAST_MLP, random_state=0).fit(X, y, soft_labels=soft)
    assert clf.score(X, y) > 0.9
    with pytest.raises(ValueError, match="soft_labels"):
        NeuralNetClassifier(**FAST_MLP).fit(X, y, soft_labels=soft[:, :2])


def test_loss_follows_the_kind_of_the_labels(blobs):
    X, y = blobs
    probabilities = np.full((len(y), 3), 0.1)
    probabilities[np.arange(len(y)), y] = 0.8
    centred = np.eye(3)[y] - 1.0 / 3
    for soft, loss in [(None, "ce"), (probabilities, "ce"), (centred, "mse")]:
        clf = NeuralNetClassifier(**FAST_MLP, random_state=0).fit(X, y, soft_labels=soft)
        assert clf.loss_ == loss and clf.score(X, y) > 0.9
    assert NeuralNetClassifier(**FAST_MLP, loss="mse").fit(X, y, soft_labels=probabilities).loss_ == "mse"
    # Non-negative rows that do not sum to one are target weights of the cross-entropy (RaT-BPTT's
    # learned labels); rows with negative entries cannot be.
    weights = probabilities * 2.0
    assert NeuralNetClassifier(**FAST_MLP, random_state=0).fit(X, y, soft_labels=weights).loss_ == "ce"
    with pytest.raises(ValueError, match="loss='ce' needs soft labels that are probability"):
        NeuralNetClassifier(**FAST_MLP, loss="ce").fit(X, y, soft_labels=centred)
    with pytest.raises(ValueError, match="loss='ce'"):
        evaluate(X, y, X, y, soft_labels=centred, loss="ce", n_models=1, **FAST_MLP)


def test_soft_labels_beyond_float32_are_rejected(blobs):
    X, y = blobs
    soft = np.eye(3)[y]
    soft[0, 0] = 1e39
    with pytest.raises(ValueError, match=r"soft_labels.*too large for dtype\('float32'\)"):
        NeuralNetClassifier(**FAST_MLP).fit(X, y, soft_labels=soft)


def test_evaluate_reports_mean_and_std(blobs):
    X, y = blobs
    result = evaluate(X, y, X, y, n_models=3, random_state=0, **FAST_MLP)
    assert result.scores.shape == (3,)
    assert result.mean == pytest.approx(np.mean(result.scores)) and result.std >= 0
    assert "±" in str(result)
    again = evaluate(X, y, X, y, n_models=3, random_state=0, **FAST_MLP)
    np.testing.assert_array_equal(result.scores, again.scores)  # seeded: reproducible
    with pytest.raises(ValueError, match="n_models"):
        evaluate(X, y, X, y, n_models=0)


def test_a_fitted_distiller_checks_n_models_before_training(blobs):
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = blobs
    distiller = HerdingDistiller(ipc=2).fit(X, y)
    for bad in (0, 1.5, "3"):
        with pytest.raises(InvalidParameterError, match="'n_models' parameter"):
            distiller.evaluate(X, y, n_models=bad)


def test_image_training_with_augmentation():
    X, y = load_digits_images(return_X_y=True)
    result = evaluate(X[:500], y[:500], X[500:800], y[500:800], n_models=2, model=ConvNet(width=8, depth=2),
                      n_steps=300, learning_rate=3e-3, random_state=0)
    assert result.mean > 0.7


def test_defaults_of_the_protocol():
    assert default_eval_model((28, 28, 1)).norm == "none"
    assert default_eval_model((64, 64, 3)).depth == 4
    assert isinstance(default_eval_model((5,)), MLP)
    assert default_eval_steps(10) < default_eval_steps(100) < default_eval_steps(1000)


def test_bad_parameters_are_named(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="learning_rate"):
        NeuralNetClassifier(learning_rate=-1).fit(X, y)
    with pytest.raises(ValueError, match="loss"):
        NeuralNetClassifier(loss="hinge").fit(X, y)
    with pytest.raises(FloatingPointError, match="learning_rate"):
        NeuralNetClassifier(MLP(hidden_sizes=(8,)), n_steps=20, learning_rate=1e12, loss="mse",
                            random_state=0).fit(X * 1e6, y)


def test_distilled_classifier_trains_on_the_synthetic_set_only():
    X, y = load_digits_images(return_X_y=True)
    clf = DistilledClassifier(HerdingDistiller(ipc=3),
                              NeuralNetClassifier(ConvNet(width=8, depth=2), n_steps=300, learning_rate=3e-3,
                                                  random_state=0))
    clf.fit(X[:600], y[:600])
    assert clf.distiller_.synthetic_X_.shape == (30, 8, 8, 1)
    assert clf.estimator_.n_features_in_ == clf.distiller_.n_features_in_
    proba = clf.predict_proba(X[600:700])
    assert proba.shape == (100, 10) and np.allclose(proba.sum(axis=1), 1)
    assert clf.score(X[600:900], y[600:900]) > 0.5


def test_score_validates_the_test_data_once(monkeypatch):
    from sklearn_distill import RandomDistiller, base, evaluation

    X, y = load_digits_images(return_X_y=True)
    calls = []
    for module in (base, evaluation):  # count the checks wherever they run
        real = module.validate_input
        monkeypatch.setattr(module, "validate_input",
                            lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
    fitted = RandomDistiller(ipc=1, n_eval_models=1, eval_steps=5,
                             eval_model=ConvNet(width=4, depth=1), random_state=0).fit(X, y)
    assert 0.0 <= fitted.score(X[:40], y[:40]) <= 1.0
    assert len(calls) == 1
