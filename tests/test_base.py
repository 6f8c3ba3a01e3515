"""The estimator contract every distiller shares (BaseDistiller), shown on the coreset baselines."""

import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
from imblearn.pipeline import make_pipeline
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import StandardScaler

from sklearn_distill import (MLP, ConvNet, DistilledClassifier, HerdingDistiller, ImageStandardizer,
                             NeuralNetClassifier, RandomDistiller, load_digits_images)

FAST_EVAL = dict(n_eval_models=2, eval_steps=300, eval_model=ConvNet(width=8, depth=2))


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images(return_X_y=True)
    return ImageStandardizer().fit(X).transform(X), y


def test_imblearn_pipeline_trains_the_classifier_on_the_distilled_set(digits):
    X, y = digits
    rows = X.reshape(len(X), -1)
    pipe = make_pipeline(StandardScaler(), HerdingDistiller(ipc=10), LogisticRegression(max_iter=500))
    pipe.fit(rows, y)
    # The classifier saw only the 100 distilled rows.
    assert pipe[-1].n_features_in_ == 64 and pipe[1].synthetic_X_.shape == (100, 64)
    assert pipe.score(rows, y) > 0.85


def test_grid_search_over_ipc(digits):
    X, y = digits
    clf = DistilledClassifier(HerdingDistiller(ipc=1),
                              NeuralNetClassifier(ConvNet(width=8, depth=2), n_steps=300, learning_rate=3e-3,
                                                  random_state=0))
    search = GridSearchCV(clf, {"distiller__ipc": [1, 5]}, cv=2).fit(X[:600], y[:600])
    assert search.best_params_ == {"distiller__ipc": 5}
    assert search.cv_results_["mean_test_score"].shape == (2,)


def test_grid_search_on_the_distiller_maximises_score(digits):
    X, y = digits
    search = GridSearchCV(RandomDistiller(random_state=0, **FAST_EVAL), {"ipc": [1, 10]}, cv=2)
    search.fit(X[:800], y[:800])
    assert search.best_params_ == {"ipc": 10}


def test_score_is_meta_test_accuracy_and_deterministic(digits):
    X, y = digits
    d = HerdingDistiller(ipc=5, random_state=0, **FAST_EVAL).fit(X[:1000], y[:1000])
    s1, s2 = d.score(X[1000:], y[1000:]), d.score(X[1000:], y[1000:])
    assert 0.5 < s1 <= 1 and s1 == s2
    result = d.evaluate(X[1000:], y[1000:])
    assert result.scores.shape == (2,) and result.mean == s1
    with pytest.raises(ValueError, match="features"):
        d.score(X[1000:].reshape(-1, 64), y[1000:])


def test_pickle_and_joblib_round_trips(digits, tmp_path):
    X, y = digits
    d = HerdingDistiller(ipc=2).fit(X, y)
    for clone in (pickle.loads(pickle.dumps(d)),
                  joblib.load(joblib.dump(d, tmp_path / "d.joblib")[0])):
        np.testing.assert_array_equal(clone.synthetic_X_, d.synthetic_X_)
        np.testing.assert_array_equal(clone.synthetic_y_, d.synthetic_y_)


def test_same_random_state_gives_identical_sets(digits):
    X, y = digits
    a = RandomDistiller(ipc=3, random_state=7).fit(X, y)
    b = RandomDistiller(ipc=3, random_state=7).fit(X, y)
    np.testing.assert_array_equal(a.synthetic_X_, b.synthetic_X_)


def test_layouts_and_labels_come_back_as_given(digits):
    X, y = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    d = HerdingDistiller(ipc=1).fit(X[..., 0], names[y])  # (n, 8, 8) images, string labels
    assert d.synthetic_X_.shape == (10, 8, 8)
    assert set(d.synthetic_y_) == set(names)
    d = HerdingDistiller(ipc=1, image_shape=(8, 8, 1)).fit(X.reshape(len(X), -1), y)
    assert d.synthetic_X_.shape == (10, 64)


def test_pandas_in_pandas_out():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(40, 3)), columns=["a", "b", "c"])
    y = pd.Series(np.repeat(["x", "y"], 20), name="target")
    Xs, ys = HerdingDistiller(ipc=2).fit_resample(X, y)
    assert isinstance(Xs, pd.DataFrame) and list(Xs.columns) == ["a", "b", "c"]
    assert isinstance(ys, pd.Series) and ys.name == "target" and len(ys) == 4


@pytest.mark.parametrize("params, X, y, match", [
    ({"ipc": 0}, None, None, "ipc"),
    ({"ipc": 200}, None, None, "ipc"),
    ({"ipc": "ten"}, None, None, "ipc"),
    ({"embedding": "umap"}, None, None, "embedding"),
    ({}, "nan", None, "NaN"),
    ({}, "inf", None, "infinity"),
    ({}, None, "one-class", "single class"),
    ({"image_shape": (3, 3, 3)}, "rows", None, "image_shape"),
    ({}, "empty", None, "0 sample"),
])
def test_bad_input_gives_a_clear_error(digits, params, X, y, match):
    X0, y0 = digits
    Xb = {None: X0, "nan": np.where(np.arange(X0.size).reshape(X0.shape) == 5, np.nan, X0),
          "inf": np.where(np.arange(X0.size).reshape(X0.shape) == 5, np.inf, X0),
          "rows": X0.reshape(len(X0), -1), "empty": X0[:0]}[X]
    yb = np.zeros_like(y0) if y == "one-class" else y0[:len(Xb)]
    with pytest.raises(ValueError, match=match):
        HerdingDistiller(**params).fit(Xb, yb)


def test_tabular_rows_use_an_mlp():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-2, 1, (50, 4)), rng.normal(2, 1, (50, 4))])
    y = np.repeat([0, 1], 50)
    d = HerdingDistiller(ipc=3, n_eval_models=2, eval_steps=300, eval_model=MLP(hidden_sizes=(16,)),
                         random_state=0).fit(X, y)
    assert d.synthetic_X_.shape == (6, 4) and d.score(X, y) > 0.9


def _blobs(n_features=3, n_per_class=20, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(3 * c, 1, (n_per_class, n_features)) for c in range(n_classes)])
    return X, np.repeat(np.arange(n_classes), n_per_class)


def test_outputs_come_back_in_the_input_containers():
    X, y = _blobs()
    d = HerdingDistiller(ipc=2)
    Xs, ys = d.fit_resample(X.tolist(), y.tolist())
    assert isinstance(Xs, list) and isinstance(ys, list) and len(Xs) == len(ys) == 6
    Xs, ys = d.fit_resample(pd.DataFrame(X, columns=["a", "b", "c"]),
                            pd.DataFrame({"label": y.astype(np.int16)}))
    assert isinstance(ys, pd.DataFrame) and list(ys.columns) == ["label"]
    assert ys["label"].dtype == np.int16 and ys.index.equals(Xs.index)
    Xs, ys = d.fit_resample(X, pd.Series(pd.Categorical(np.array(["u", "v", "w"])[y]), name="kind"))
    assert ys.name == "kind" and isinstance(ys.dtype, pd.CategoricalDtype)
    assert list(ys) == ["u", "u", "v", "v", "w", "w"]


def test_one_hot_targets_are_accepted_and_returned_one_hot():
    X, y = _blobs()
    Y = np.zeros((len(y), 4), dtype=np.float32)  # a fourth class that never occurs
    Y[np.arange(len(y)), y] = 1
    Xs, Ys = HerdingDistiller(ipc=2).fit_resample(X, Y)
    X1, y1 = HerdingDistiller(ipc=2).fit_resample(X, y)
    assert Ys.shape == (6, 4) and Ys.dtype == np.float32 and np.all(Ys.sum(axis=1) == 1)
    np.testing.assert_array_equal(Ys.argmax(axis=1), y1)
    np.testing.assert_array_equal(Xs, X1)
    Y[0, 3] = 1  # two labels on one row: multilabel
    with pytest.raises(ValueError, match="multilabel"):
        HerdingDistiller(ipc=2).fit_resample(X, Y)


def test_feature_names_out_are_the_input_names(digits):
    X, y = _blobs()
    d = HerdingDistiller(ipc=2).fit(pd.DataFrame(X, columns=["a", "b", "c"]), y)
    assert list(d.get_feature_names_out()) == ["a", "b", "c"]
    assert list(HerdingDistiller(ipc=2).fit(X, y).get_feature_names_out()) == ["x0", "x1", "x2"]
    images, labels = digits
    with pytest.raises(ValueError, match="image array"):
        HerdingDistiller(ipc=1).fit(images, labels).get_feature_names_out()


def test_pandas_output_of_a_pipeline_names_the_columns_through_a_distiller():
    X, y = _blobs()
    X = pd.DataFrame(X, columns=["a", "b", "c"])
    pipe = make_pipeline(StandardScaler(), HerdingDistiller(ipc=2), LogisticRegression())
    pipe.set_output(transform="pandas").fit(X, y)
    assert list(pipe[1].get_feature_names_out(pipe[0].get_feature_names_out())) == ["a", "b", "c"]
    assert list(pipe[-1].feature_names_in_) == ["a", "b", "c"]
    assert list(pipe[:-1].get_feature_names_out()) == ["a", "b", "c"]
