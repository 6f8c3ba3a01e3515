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


# -- whole kinds of fault from public bug reports (one case of each in test_field_reports.py) ----

_TINY_EVAL = dict(n_eval_models=1, eval_steps=5, eval_model=MLP(hidden_sizes=(8,)))
_TINY_NET = dict(model=MLP(hidden_sizes=(8,)), n_steps=5)


def _tiny_estimators(random_state=0):
    """One of each kind of estimator that takes data and a seed (tiny settings)."""
    import sklearn_distill as sd

    rat = sd.RaTBPTTDistiller(ipc=1, n_steps=2, window=1, unroll=2, batch_size=16,
                              model=MLP(hidden_sizes=(8,)), random_state=random_state, **_TINY_EVAL)
    return {
        "random": RandomDistiller(ipc=1, random_state=random_state, **_TINY_EVAL),
        "herding": HerdingDistiller(ipc=1, random_state=random_state, **_TINY_EVAL),
        "kcenter": sd.KCenterDistiller(ipc=1, random_state=random_state, **_TINY_EVAL),
        "frepo": sd.FRePoDistiller(ipc=1, n_steps=2, batch_size=16, pool_size=2, max_online_steps=2,
                                   model=MLP(hidden_sizes=(8,)), random_state=random_state,
                                   **_TINY_EVAL),
        "ratbptt": rat,
        "boosted": sd.BoostedDistiller(rat, block_ipc=1, n_blocks=2, random_state=random_state),
        "distilled_classifier": DistilledClassifier(
            RandomDistiller(ipc=1, random_state=random_state),
            NeuralNetClassifier(random_state=random_state, **_TINY_NET)),
    }


@pytest.mark.parametrize("name", ["random", "herding", "kcenter", "frepo", "ratbptt", "boosted",
                                  "distilled_classifier"])
def test_integer_cv_is_stratified_for_every_distiller(name):
    from sklearn.base import is_classifier
    from sklearn.model_selection import StratifiedKFold, check_cv

    estimator = _tiny_estimators()[name]
    y = np.repeat([0, 1, 2], 4)
    assert is_classifier(estimator)
    assert isinstance(check_cv(3, y, classifier=is_classifier(estimator)), StratifiedKFold)


def test_score_warns_about_classes_fit_never_saw(digits):
    X, y = digits
    rows = X.reshape(len(X), -1)
    fitted = {"distiller": RandomDistiller(ipc=1, random_state=0, **_TINY_EVAL),
              "classifier": DistilledClassifier(RandomDistiller(ipc=1, random_state=0),
                                                NeuralNetClassifier(random_state=0, **_TINY_NET))}
    keep = y < 5
    for estimator in fitted.values():
        estimator.fit(rows[keep], y[keep])
        with pytest.warns(UserWarning, match="5 classes that .* never saw in fit"):
            estimator.score(rows[:200], y[:200])


def _with_huge_value(X):
    X = np.array(X, dtype=np.float64)
    X.reshape(-1)[7] = 1e39  # finite in float64, infinite in float32
    return X


@pytest.mark.parametrize("entry", ["fit", "fit_resample", "score", "evaluate", "net_fit",
                                   "net_predict", "evaluate_function", "class_incremental"])
def test_values_beyond_float32_are_rejected_everywhere(digits, entry):
    from sklearn_distill import class_incremental_evaluation, evaluate

    X, y = digits
    X, y = X[:200].reshape(200, -1), y[:200]
    bad = _with_huge_value(X)
    match = r"infinity or a value too large for dtype\('float32'\)"
    d = HerdingDistiller(ipc=1, **_TINY_EVAL)
    net = NeuralNetClassifier(**_TINY_NET)
    calls = {
        "fit": lambda: d.fit(bad, y),
        "fit_resample": lambda: d.fit_resample(bad, y),
        "score": lambda: d.fit(X, y).score(bad, y),
        "evaluate": lambda: d.fit(X, y).evaluate(bad, y),
        "net_fit": lambda: net.fit(bad, y),
        "net_predict": lambda: net.fit(X, y).predict(bad),
        "evaluate_function": lambda: evaluate(X, y, bad, y, n_models=1, **_TINY_NET),
        "class_incremental": lambda: class_incremental_evaluation(
            d, bad, y, X, y, n_steps=2, estimator=LogisticRegression(max_iter=50)),
    }
    with pytest.raises(ValueError, match=match):
        calls[entry]()


@pytest.mark.parametrize("name", ["random", "herding", "kcenter", "frepo", "ratbptt", "boosted",
                                  "distilled_classifier"])
def test_every_seed_fit_accepts_works_in_score(digits, name):
    X, y = digits
    rows, y = X[:200].reshape(200, -1), y[:200]
    estimator = _tiny_estimators(random_state=2**32 - 1)[name].fit(rows, y)
    assert 0.0 <= estimator.score(rows, y) <= 1.0


def test_every_seed_works_in_the_evaluators(digits):
    from sklearn_distill import MembershipInferenceEvaluator, class_incremental_evaluation

    X, y = digits
    rows, y = X[:300].reshape(300, -1), y[:300]
    seed = 2**32 - 1
    result = class_incremental_evaluation(RandomDistiller(ipc=1), rows[:200], y[:200], rows[200:],
                                          y[200:], n_steps=2, random_state=seed,
                                          estimator=NeuralNetClassifier(**_TINY_NET))
    assert len(result.table) == 2
    model = DistilledClassifier(RandomDistiller(ipc=1), NeuralNetClassifier(**_TINY_NET),
                                random_state=seed).fit(rows[:150], y[:150])
    mia = MembershipInferenceEvaluator(attacks=("threshold",), n_splits=2, random_state=seed)
    assert mia.evaluate(model, rows[:150], y[:150], rows[150:], y[150:]) is not None


@pytest.mark.parametrize("channels", [1, 3])
def test_channels_first_images_are_refused_everywhere(channels):
    from sklearn_distill import plot_synthetic_images

    rng = np.random.default_rng(0)
    X = rng.random((12, channels, 8, 8)).astype(np.float32)
    y = np.arange(12) % 2
    match = r"looks channels-first.*np\.moveaxis"
    for call in (lambda: RandomDistiller(ipc=1).fit(X, y),
                 lambda: NeuralNetClassifier(**_TINY_NET).fit(X, y),
                 lambda: ImageStandardizer().fit(X),
                 lambda: plot_synthetic_images(X, y)):
        with pytest.raises(ValueError, match=match):
            call()
    # Channels-last passes, and so do the same arrays declared channels-last with image_shape.
    assert RandomDistiller(ipc=1).fit(np.moveaxis(X, 1, -1), y).synthetic_X_.shape == (2, 8, 8,
                                                                                      channels)
    declared = RandomDistiller(ipc=1, image_shape=X.shape[1:]).fit(X, y)
    assert declared.synthetic_X_.shape == (2, channels, 8, 8)
