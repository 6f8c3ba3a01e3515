import time

import numpy as np
import pytest
from sklearn.decomposition import PCA

from sklearn_distill import HerdingDistiller, KCenterDistiller, RandomDistiller, load_digits_images
from sklearn_distill.methods.coresets import herding_indices, kcenter_indices

CORESETS = [RandomDistiller, HerdingDistiller, KCenterDistiller]


@pytest.fixture(scope="module")
def digits():
    return load_digits_images(return_X_y=True)


@pytest.mark.parametrize("cls", CORESETS)
def test_class_balanced_real_rows(cls, digits):
    X, y = digits
    d = cls(ipc=4, random_state=0).fit(X, y)
    assert d.synthetic_X_.shape == (40, 8, 8, 1)
    assert np.all(np.bincount(d.synthetic_y_) == 4)
    np.testing.assert_array_equal(d.synthetic_X_, X[d.sample_indices_])
    np.testing.assert_array_equal(d.synthetic_y_, y[d.sample_indices_])
    assert len(np.unique(d.sample_indices_)) == 40
    assert d.sampling_strategy_ == {c: 4 for c in range(10)}


def test_herding_matches_the_class_mean_better_than_random():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(500, 5))
    picked = herding_indices(E, 10)
    herd_err = np.linalg.norm(E[picked].mean(0) - E.mean(0))
    rand_err = np.mean([np.linalg.norm(E[rng.choice(500, 10, replace=False)].mean(0) - E.mean(0))
                        for _ in range(50)])
    assert herd_err < 0.5 * rand_err


def test_herding_brute_force_equivalence():
    rng = np.random.default_rng(1)
    E = rng.normal(size=(30, 3))
    order, total = [], np.zeros(3)
    for t in range(1, 6):
        costs = [np.inf if i in order else np.linalg.norm(E.mean(0) - (total + E[i]) / t) for i in range(30)]
        order.append(int(np.argmin(costs)))
        total += E[order[-1]]
    np.testing.assert_array_equal(herding_indices(E, 5), order)


def test_kcenter_covers_the_class():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(400, 2))
    picked = kcenter_indices(E, 8)
    radius = np.sqrt(((E[:, None] - E[picked][None]) ** 2).sum(-1)).min(1).max()
    rand = rng.choice(400, 8, replace=False)
    rand_radius = np.sqrt(((E[:, None] - E[rand][None]) ** 2).sum(-1)).min(1).max()
    assert radius < rand_radius
    assert len(set(kcenter_indices(np.zeros((5, 2)), 5))) == 5  # duplicates never re-picked


def test_embedding_space(digits):
    X, y = digits
    pca = PCA(n_components=8, random_state=0).fit(X.reshape(len(X), -1))
    in_pca = HerdingDistiller(ipc=2, embedding=lambda Z: pca.transform(Z.reshape(len(Z), -1))).fit(X, y)
    in_input = HerdingDistiller(ipc=2).fit(X, y)
    assert not np.array_equal(in_pca.sample_indices_, in_input.sample_indices_)
    with pytest.raises(ValueError, match="embedding"):
        HerdingDistiller(ipc=1, embedding=lambda Z: np.zeros(3)).fit(X, y)
    with pytest.raises(ValueError, match="embedding"):
        HerdingDistiller(ipc=1, embedding="pca").fit(X, y)


def test_random_state_and_determinism(digits):
    X, y = digits
    a = RandomDistiller(ipc=3, random_state=1).fit(X, y).sample_indices_
    b = RandomDistiller(ipc=3, random_state=1).fit(X, y).sample_indices_
    c = RandomDistiller(ipc=3, random_state=2).fit(X, y).sample_indices_
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(KCenterDistiller(ipc=3, n_jobs=2).fit(X, y).sample_indices_,
                                  KCenterDistiller(ipc=3).fit(X, y).sample_indices_)


def test_selection_is_fast_on_mnist_sized_data():
    # 60,000 rows of 784 features, 10 classes, ipc 10: the issue asks for seconds.
    rng = np.random.default_rng(0)
    X = rng.random((60000, 784), dtype=np.float32)
    y = np.repeat(np.arange(10), 6000)
    for cls in (HerdingDistiller, KCenterDistiller):
        start = time.perf_counter()
        cls(ipc=10).fit(X, y)
        assert time.perf_counter() - start < 30


@pytest.mark.parametrize("Distiller", [RandomDistiller, HerdingDistiller, KCenterDistiller])
def test_sparse_rows_select_the_same_rows_as_dense(Distiller):
    from scipy import sparse

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8)) * (rng.random((60, 8)) < 0.3)
    y = np.repeat([0, 1, 2], 20)
    dense = Distiller(ipc=3, random_state=0).fit(X, y)
    for fmt in ("csr", "csc"):
        Xs, ys = Distiller(ipc=3, random_state=0).fit_resample(sparse.csr_matrix(X).asformat(fmt), y)
        assert sparse.issparse(Xs) and Xs.format == fmt
        np.testing.assert_allclose(Xs.toarray(), dense.synthetic_X_)
        np.testing.assert_array_equal(ys, dense.synthetic_y_)
