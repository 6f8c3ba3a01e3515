"""Independent fits go through joblib, so a Dask cluster runs them without code changes.

A local ``dask.distributed`` cluster of two worker processes stands in for a real one: grid
searches, cross-validated evaluations, per-class coreset selection and membership-inference
attacks run under ``joblib.parallel_config(backend="dask")`` and must (i) execute on the workers
and (ii) give exactly the results of the same calls in this process.
"""

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV, cross_val_score

from sklearn_distill import (MLP, FRePoDistiller, HerdingDistiller, KCenterDistiller,
                             MembershipInferenceEvaluator, load_digits_images)

distributed = pytest.importorskip("distributed")
joblib = pytest.importorskip("joblib")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    with cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images(return_X_y=True)
    return X[:300].reshape(300, -1), y[:300]


def _on_dask(client, fn):
    """``fn()`` under the Dask joblib backend; returns its result and the workers that ran tasks."""
    with distributed.get_task_stream(client) as stream, joblib.parallel_config(backend="dask"):
        result = fn()
    return result, {task["worker"] for task in stream.data}


def _tiny_frepo(**kw):
    # An MLP on flattened rows: the workers compile every candidate afresh, and an MLP's steps
    # compile in a fraction of a ConvNet's time.
    return FRePoDistiller(ipc=1, n_steps=2, batch_size=64, model=MLP(hidden_sizes=(16,)),
                          n_eval_models=2, eval_steps=10, log_every=1, random_state=0, **kw)


def test_grid_search_over_pool_size_and_k_runs_on_the_cluster(client, digits):
    X, y = digits
    grid = {"pool_size": [1, 2], "max_online_steps": [2, 4]}

    def search():
        return GridSearchCV(_tiny_frepo(), grid, cv=2, n_jobs=-1).fit(X, y)

    local = GridSearchCV(_tiny_frepo(), grid, cv=2).fit(X, y)
    remote, workers = _on_dask(client, search)
    assert len(workers) == 2  # both worker processes fitted candidates
    np.testing.assert_array_equal(remote.cv_results_["mean_test_score"],
                                  local.cv_results_["mean_test_score"])
    assert remote.best_params_ == local.best_params_
    np.testing.assert_array_equal(remote.best_estimator_.synthetic_X_,
                                  local.best_estimator_.synthetic_X_)


def test_cross_validated_scores_run_on_the_cluster(client, digits):
    X, y = digits
    # The grid search's folds: the workers reuse the steps they compiled for it.
    local = cross_val_score(_tiny_frepo(), X, y, cv=2)
    remote, workers = _on_dask(client, lambda: cross_val_score(_tiny_frepo(), X, y, cv=2,
                                                               n_jobs=-1))
    assert workers
    np.testing.assert_array_equal(remote, local)


@pytest.mark.parametrize("cls", [HerdingDistiller, KCenterDistiller])
def test_per_class_coreset_selection_runs_on_the_cluster(client, digits, cls):
    X, y = digits
    local = cls(ipc=3, random_state=0).fit(X, y)
    # n_jobs=None: the number of jobs comes from the backend, as for any joblib user.
    remote, workers = _on_dask(client, lambda: cls(ipc=3, random_state=0).fit(X, y))
    assert workers
    np.testing.assert_array_equal(remote.sample_indices_, local.sample_indices_)


def test_membership_inference_attacks_run_on_the_cluster(client):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 5))
    y = (X[:, 0] + 0.8 * rng.normal(size=240) > 0).astype(int)
    # An unpruned forest memorises its noisy training labels: a target worth attacking.
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(X[:120], y[:120])

    def attack():
        evaluator = MembershipInferenceEvaluator(attacks=("threshold", "lr", "knn"), n_splits=2,
                                                 random_state=0)
        return evaluator.evaluate(model, X[:120], y[:120], X[120:], y[120:])

    local = attack()
    remote, workers = _on_dask(client, attack)
    assert workers
    assert remote.to_dict() == local.to_dict()
