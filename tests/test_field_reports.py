"""Public bug reports of this field, replayed as tests.

Each case is a report from a dataset-distillation repository or from the scikit-learn,
imbalanced-learn or JAX trackers, reduced to the bundled digits and tiny networks. The comment
above each test names the *kind* of fault; the other tests of the same kind live next to the code
they guard. New reports that replay as failures join this file.
"""

import warnings

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold, cross_val_score

from sklearn_distill import (MLP, DistilledClassifier, FRePoDistiller, HerdingDistiller,
                             NeuralNetClassifier, RaTBPTTDistiller, RandomDistiller,
                             load_digits_images)

TINY_EVAL = dict(n_eval_models=1, eval_steps=100, eval_model=MLP(hidden_sizes=(32,)))


@pytest.fixture(scope="module")
def digits_rows():
    X, y = load_digits_images(return_X_y=True)
    return X.reshape(len(X), -1), y


# Fault kind: cross-validation over a distiller is not stratified (KFold on class-sorted data).
def test_cv_over_a_distiller_is_stratified(digits_rows):
    X, y = digits_rows
    order = np.argsort(y, kind="stable")
    X_sorted, y_sorted = X[order], y[order]
    distiller = RandomDistiller(ipc=5, random_state=0, **TINY_EVAL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fold may test on classes its distiller never saw
        scores = cross_val_score(distiller, X_sorted, y_sorted, cv=3)
    reference = cross_val_score(distiller, X_sorted, y_sorted, cv=StratifiedKFold(3))
    np.testing.assert_array_equal(scores, reference)
    assert scores.min() > 0.35  # unstratified folds scored 0.06 to 0.29 (two or three classes missing)
    # A split that still leaves classes out of the training fold is flagged by score.
    fitted = distiller.fit(X_sorted[:600], y_sorted[:600])
    with pytest.warns(UserWarning, match="never saw in fit"):
        fitted.score(X_sorted[600:900], y_sorted[600:900])


# Fault kind: data finite in float64 but not in float32 (the computation's dtype) is accepted.
def test_value_beyond_float32_is_rejected(digits_rows):
    X, y = digits_rows
    X = X[:200].astype(np.float64)
    X[3, 5] = 1e39
    with pytest.raises(ValueError, match=r"infinity or a value too large for dtype\('float32'\)"):
        HerdingDistiller(ipc=2).fit(X, y[:200])


# Fault kind: seed arithmetic (a child seed made by adding to the user's integer overflows).
def test_largest_seed_fit_accepts_works_in_score(digits_rows):
    X, y = digits_rows
    d = RandomDistiller(ipc=2, random_state=2**32 - 1, **TINY_EVAL).fit(X[:300], y[:300])
    assert 0.0 <= d.score(X[300:500], y[300:500]) <= 1.0


# Fault kind: a fit that learned nothing passes for a result, with advice that misses the cause.
def test_fit_without_a_step_raises_and_names_the_singular_kernel(digits_rows):
    X, y = digits_rows
    X, y = X[:200], y[:200]
    X_same = np.stack([X[y == c][0] for c in range(10)])[y]  # the rows of a class are identical
    frepo = FRePoDistiller(ipc=2, n_steps=2, batch_size=32, pool_size=2, max_online_steps=2,
                           ridge=0.0, model=MLP(hidden_sizes=(8,)), random_state=0)
    with pytest.raises(FloatingPointError, match=r"no step was taken.*singular.*`ridge`=0") as info:
        frepo.fit(X_same, y)
    assert "learning rate" not in str(info.value)  # learning_rate=1e-9 failed the same way
    assert frepo.set_params(ridge=1e-6).fit(X_same, y).n_iter_ == 2


# Fault kind: labels trained with a loss that does not match their kind (regression vs probabilities).
def test_labels_train_with_the_loss_of_their_kind(digits_rows):
    X, y = digits_rows
    X, y = X[:300], y[:300]
    frepo = FRePoDistiller(ipc=1, n_steps=2, batch_size=32, pool_size=2, max_online_steps=2,
                           learn_labels=False, model=MLP(hidden_sizes=(8,)), random_state=0)
    # Centred one-hot rows ([0.9, -0.1, ...]) are regression targets: cross-entropy is refused.
    with pytest.raises(ValueError, match="loss='ce' needs soft labels that are probability"):
        DistilledClassifier(frepo, NeuralNetClassifier(MLP(hidden_sizes=(8,)), n_steps=5, loss="ce",
                                                       random_state=0)).fit(X, y)
    # RaT-BPTT's learned labels are non-negative target weights: every entry point trains them with
    # cross-entropy.
    rat = RaTBPTTDistiller(ipc=1, n_steps=2, window=1, unroll=2, batch_size=16, learn_labels=True,
                           model=MLP(hidden_sizes=(8,)), random_state=0)
    clf = DistilledClassifier(rat, NeuralNetClassifier(MLP(hidden_sizes=(8,)), n_steps=5,
                                                       random_state=0)).fit(X, y)
    assert clf.estimator_.loss_ == "ce"


# Fault kind: channels-first images silently read as channels-last.
@pytest.mark.parametrize("channels", [1, 3])
def test_channels_first_images_are_refused(channels):
    X = np.random.default_rng(0).random((20, channels, 8, 8)).astype(np.float32)
    y = np.arange(20) % 2
    with pytest.raises(ValueError, match=r"channels-first.*np\.moveaxis"):
        RandomDistiller(ipc=1).fit(X, y)
