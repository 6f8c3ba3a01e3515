import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import check_estimator

from sklearn_distill.preprocessing import ImageStandardizer, ZCAWhitening


def _correlated(n=400, d=6, seed=0):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) + 2 * np.eye(d)
    return rng.normal(size=(n, d)) @ mixing + rng.normal(size=d)


def _cov(Z):
    Z = Z.reshape(len(Z), -1)
    return np.cov(Z, rowvar=False, bias=True)


# -- ZCAWhitening ---------------------------------------------------------------------------------

def test_whitened_covariance_is_identity_without_regularization():
    X = _correlated()
    Z = ZCAWhitening(regularization=0.0, standardize=None).fit_transform(X)
    np.testing.assert_allclose(_cov(Z), np.eye(6), atol=1e-8)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-10)


def test_zca_is_symmetric_and_closest_to_input():
    X = _correlated()
    zca = ZCAWhitening(regularization=0.0, standardize=None).fit(X)
    np.testing.assert_allclose(zca.whitening_, zca.whitening_.T, atol=1e-12)
    np.testing.assert_allclose(zca.whitening_ @ zca.coloring_, np.eye(6), atol=1e-10)


def test_regularization_is_relative_to_mean_eigenvalue():
    X = _correlated()
    zca = ZCAWhitening(regularization=0.1, standardize=None).fit(X)
    cov = _cov(X)
    assert zca.regularization_ == pytest.approx(0.1 * np.trace(cov) / 6)
    eig = np.linalg.eigvalsh(cov)[::-1]
    np.testing.assert_allclose(zca.eigenvalues_, eig + zca.regularization_, rtol=1e-10)
    # Whitened variances are s / (s + lambda) < 1 along the eigenvectors.
    out = np.linalg.eigvalsh(_cov(zca.transform(X)))[::-1]
    np.testing.assert_allclose(out, eig / (eig + zca.regularization_), rtol=1e-8)
    # Relative: the output does not depend on the data's scale.
    np.testing.assert_allclose(ZCAWhitening(standardize=None).fit_transform(100 * X),
                               zca.transform(X), atol=1e-8)
    absolute = ZCAWhitening(regularization=0.5, standardize=None,
                            relative_regularization=False).fit(X)
    assert absolute.regularization_ == 0.5


@pytest.mark.parametrize("standardize", [None, "feature"])
@pytest.mark.parametrize("shape", [(30, 12), (30, 3, 4), (30, 2, 3, 2)])
def test_round_trip_is_exact(standardize, shape):
    X = np.random.default_rng(1).normal(size=shape) * 3 + 1
    zca = ZCAWhitening(standardize=standardize).fit(X)
    Z = zca.transform(X)
    assert Z.shape == X.shape and Z.dtype == np.float64
    np.testing.assert_allclose(zca.inverse_transform(Z), X, atol=1e-10)


def test_image_standardization_round_trip_gives_standardized_images():
    X = np.random.default_rng(2).uniform(size=(40, 4, 4, 3))
    zca = ZCAWhitening().fit(X)
    back = zca.inverse_transform(zca.transform(X)).reshape(40, -1)
    flat = X.reshape(40, -1)
    expected = (flat - flat.mean(axis=1, keepdims=True)) / flat.std(axis=1, keepdims=True)
    np.testing.assert_allclose(back, expected, atol=1e-10)


def test_fewer_samples_than_features_uses_rank_control():
    X = np.random.default_rng(3).normal(size=(5, 4, 4, 1))  # n = 5 < d = 16
    zca = ZCAWhitening(standardize=None).fit(X)
    gains = np.linalg.eigvalsh(zca.whitening_)
    assert np.all(np.isfinite(zca.whitening_))
    assert np.sum(np.isclose(gains, 1.0)) >= 16 - 5
    np.testing.assert_allclose(zca.inverse_transform(zca.transform(X)), X, atol=1e-10)


def test_float32_preserved_and_close_to_float64():
    X = np.random.default_rng(4).uniform(size=(50, 4, 4, 3))
    Z64 = ZCAWhitening().fit_transform(X)
    Z32 = ZCAWhitening().fit_transform(X.astype(np.float32))
    assert Z32.dtype == np.float32 and Z32.shape == X.shape
    np.testing.assert_allclose(Z32, Z64, atol=1e-3)


def test_zca_shape_mismatch_and_nan():
    zca = ZCAWhitening().fit(np.random.default_rng(0).normal(size=(20, 4, 4, 1)))
    with pytest.raises(ValueError, match="shape"):
        zca.transform(np.zeros((3, 4, 4, 3)))
    with pytest.raises(ValueError, match="features"):
        zca.transform(np.zeros((3, 16)))
    bad = np.ones((20, 5))
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ZCAWhitening().fit(bad)
    with pytest.raises(ValueError, match="NaN"):
        zca.transform(np.full((2, 4, 4, 1), np.nan))


@pytest.mark.parametrize("params", [{"regularization": -1.0}, {"standardize": "pixel"},
                                    {"relative_regularization": "yes"}])
def test_zca_invalid_parameters(params):
    with pytest.raises(ValueError, match=next(iter(params))):
        ZCAWhitening(**params).fit(np.ones((4, 3)))


def test_uncentred_zca_uses_the_second_moment_matrix():
    # RaT-BPTT's official ZCA (framework/config.py:369-411): each image centred and scaled to unit
    # norm, then the second-moment matrix of the rows without removing the feature mean, a ridge
    # of 0.1 times its mean eigenvalue, and the rows multiplied by W without centring.
    rng = np.random.default_rng(3)
    X = rng.uniform(size=(300, 2, 2, 3)) + np.linspace(0, 1, 12).reshape(2, 2, 3)
    rows = X.reshape(300, -1)
    rows = rows - rows.mean(axis=1, keepdims=True)
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    moment = rows.T @ rows / len(rows)
    values, vectors = np.linalg.eigh(moment)
    W = vectors @ np.diag((values + 0.1 * values.mean()) ** -0.5) @ vectors.T
    zca = ZCAWhitening(regularization=0.1, standardize="image", center=False).fit(X)
    np.testing.assert_allclose(zca.mean_, 0)
    np.testing.assert_allclose(zca.transform(X).reshape(300, -1), rows @ W, atol=1e-8)
    # The feature mean matters here: the centred whitening differs.
    centred = ZCAWhitening(regularization=0.1, standardize="image").fit(X)
    assert not np.allclose(centred.transform(X).reshape(300, -1), rows @ W, atol=1e-3)
    # Undone up to the per-image standardisation (unit deviation: the unit-norm rows x sqrt(d)).
    np.testing.assert_allclose(zca.inverse_transform(zca.transform(X)).reshape(300, -1),
                               rows * np.sqrt(12), atol=1e-8)


# -- ImageStandardizer ----------------------------------------------------------------------------

def test_fixed_channel_statistics():
    X = np.random.default_rng(4).uniform(size=(12, 4, 4, 3))
    # The published CIFAR-10 constants (FRePo's and RCIG's data loaders), whatever the rows.
    scaler = ImageStandardizer(statistics="cifar10").fit(X[:3])
    np.testing.assert_allclose(scaler.mean_, [0.4914, 0.4822, 0.4465])
    np.testing.assert_allclose(scaler.scale_, [0.2470, 0.2435, 0.2616])
    np.testing.assert_allclose(scaler.transform(X), (X - scaler.mean_) / scaler.scale_)
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(X)), X)
    ratbptt = ImageStandardizer(statistics="cifar10_ratbptt").fit(X)
    np.testing.assert_allclose(ratbptt.scale_, [0.2023, 0.1994, 0.2010])
    assert ImageStandardizer(statistics="mnist").fit(X[..., 0]).mean_.tolist() == [0.1307]
    # A pair (mean, std) in the data's units.
    given = ImageStandardizer(statistics=([10.0, 20.0, 30.0], [2.0, 4.0, 5.0])).fit(X * 255)
    np.testing.assert_allclose(given.transform(X * 255), (X * 255 - [10, 20, 30]) / [2, 4, 5])


@pytest.mark.parametrize("params, X, match", [
    ({"statistics": "cifar10"}, np.full((2, 4, 4, 3), 255.0), r"\[0, 1\].*255"),
    ({"statistics": "cifar10"}, np.full((2, 4, 4, 1), 0.5), "3 mean.*1 channel"),
    ({"statistics": "cifar10", "axis": "image"}, np.full((2, 4, 4, 3), 0.5), "axis='channel'"),
    ({"statistics": ([0.5], [0.0])}, np.full((2, 4, 4), 0.5), "positive"),
    ({"statistics": ([0.5],)}, np.full((2, 4, 4), 0.5), "pair"),
    ({"statistics": "svhn"}, np.full((2, 4, 4, 3), 0.5), "statistics"),
])
def test_fixed_channel_statistics_errors(params, X, match):
    with pytest.raises(ValueError, match=match):
        ImageStandardizer(**params).fit(X)


def test_named_statistics_refuse_pixels_on_another_scale_in_transform():
    scaler = ImageStandardizer(statistics="cifar10").fit(np.full((2, 4, 4, 3), 0.5))
    with pytest.raises(ValueError, match="divide uint8 pixels by 255"):
        scaler.transform(np.full((2, 4, 4, 3), 128.0))


def test_channel_statistics_nhwc():
    rng = np.random.default_rng(5)
    X = rng.normal(loc=[1.0, -2.0, 5.0], scale=[0.5, 2.0, 3.0], size=(20, 4, 4, 3))
    scaler = ImageStandardizer().fit(X)
    np.testing.assert_allclose(scaler.mean_, X.mean(axis=(0, 1, 2)))
    np.testing.assert_allclose(scaler.scale_, X.std(axis=(0, 1, 2)))
    Z = scaler.transform(X)
    assert Z.shape == X.shape
    np.testing.assert_allclose(Z.mean(axis=(0, 1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=(0, 1, 2)), 1)
    np.testing.assert_allclose(scaler.inverse_transform(Z), X)


def test_channel_3d_and_rows_with_image_shape():
    X = np.random.default_rng(6).uniform(size=(10, 4, 4, 3))
    grey = ImageStandardizer().fit(X[..., 0])
    assert grey.n_channels_ == 1 and grey.transform(X[..., 0]).shape == (10, 4, 4)
    rows = ImageStandardizer(image_shape=(4, 4, 3)).fit(X.reshape(10, -1))
    np.testing.assert_allclose(rows.mean_, ImageStandardizer().fit(X).mean_)
    np.testing.assert_allclose(rows.transform(X.reshape(10, -1)),
                               ImageStandardizer().fit_transform(X).reshape(10, -1))
    with pytest.raises(ValueError, match="image_shape"):
        ImageStandardizer(image_shape=(4, 4, 2)).fit(X.reshape(10, -1))


def test_per_image_standardization():
    X = np.random.default_rng(7).uniform(size=(6, 5, 5, 3)) * np.arange(1, 7)[:, None, None, None]
    scaler = ImageStandardizer(axis="image")
    Z = scaler.fit_transform(X)
    np.testing.assert_allclose(Z.mean(axis=(1, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=(1, 2, 3)), 1)
    assert not hasattr(scaler, "inverse_transform")
    constant = scaler.fit_transform(np.ones((2, 3, 3)))
    np.testing.assert_array_equal(constant, 0)


def test_standardizer_errors():
    with pytest.raises(ValueError, match="axis"):
        ImageStandardizer(axis="pixel").fit(np.ones((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        ImageStandardizer().fit(np.full((3, 2, 2), np.nan))
    scaler = ImageStandardizer().fit(np.ones((3, 4, 4, 3)))
    with pytest.raises(ValueError, match="shape"):
        scaler.transform(np.ones((3, 4, 4, 1)))


# -- scikit-learn conventions ---------------------------------------------------------------------

@pytest.mark.parametrize("estimator", [ZCAWhitening(), ImageStandardizer()])
def test_clone_pickle_and_fit_transform(estimator):
    X = np.random.default_rng(8).uniform(size=(15, 4, 4, 3))
    cloned = clone(estimator)
    assert cloned.get_params() == estimator.get_params()
    fitted = cloned.fit(X)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(restored.transform(X), fitted.transform(X))
    np.testing.assert_allclose(clone(estimator).fit_transform(X), fitted.transform(X))


def test_pipeline_reproducing_frepo_preprocessing():
    X = np.random.default_rng(9).uniform(size=(30, 4, 4, 3))
    pipe = make_pipeline(ImageStandardizer(), ZCAWhitening(standardize=None))
    Z = pipe.fit_transform(X)
    assert Z.shape == X.shape
    np.testing.assert_allclose(pipe.inverse_transform(Z), X, atol=1e-10)


def test_feature_names_for_rows_only():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(np.random.default_rng(0).normal(size=(10, 3)), columns=["a", "b", "c"])
    zca = ZCAWhitening(standardize=None).set_output(transform="pandas").fit(df)
    out = zca.transform(df)
    assert list(out.columns) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="2-D"):
        ZCAWhitening().fit(np.ones((4, 2, 2))).get_feature_names_out()


@pytest.mark.parametrize("estimator", [ZCAWhitening(), ZCAWhitening(standardize="feature"),
                                       ZCAWhitening(center=False),
                                       ImageStandardizer(), ImageStandardizer(axis="image")],
                         ids=repr)
def test_check_estimator(estimator):
    with warnings.catch_warnings():
        # Only the array-API check is skipped (it needs SCIPY_ARRAY_API set).
        warnings.simplefilter("ignore")
        check_estimator(estimator)
