"""scikit-learn's estimator checks over every public estimator, and imbalanced-learn's sampler
checks over every public distiller, with fast settings."""

from imblearn.base import is_sampler
from imblearn.utils.estimator_checks import parametrize_with_checks as parametrize_with_sampler_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

import sklearn_distill as sd
from sklearn_distill import (MLP, BaseDistiller, DistilledClassifier, HerdingDistiller, ImageStandardizer,
                             KCenterDistiller, NeuralNetClassifier, RandomDistiller, ZCAWhitening)

TINY_EVAL = dict(n_eval_models=1, eval_steps=5, eval_model=MLP(hidden_sizes=(8,)))
FAST_NET = dict(model=MLP(hidden_sizes=(32,)), n_steps=200, learning_rate=1e-2)


def _estimators():
    yield RandomDistiller(random_state=0, **TINY_EVAL)
    yield HerdingDistiller(**TINY_EVAL)
    yield KCenterDistiller(**TINY_EVAL)
    yield NeuralNetClassifier(random_state=0, **FAST_NET)
    yield DistilledClassifier(HerdingDistiller(ipc=1), NeuralNetClassifier(random_state=0, **FAST_NET))
    yield ZCAWhitening()
    yield ImageStandardizer()
    if hasattr(sd, "FRePoDistiller"):
        yield sd.FRePoDistiller(ipc=1, n_steps=2, batch_size=16, pool_size=2, max_online_steps=2,
                                model=MLP(hidden_sizes=(8,)), random_state=0, **TINY_EVAL)
    if hasattr(sd, "RaTBPTTDistiller"):
        rat = sd.RaTBPTTDistiller(ipc=1, n_steps=2, window=1, unroll=2, batch_size=16,
                                  model=MLP(hidden_sizes=(8,)), random_state=0, **TINY_EVAL)
        yield rat
        yield sd.BoostedDistiller(rat, block_ipc=1, n_blocks=2, beta=0.1, random_state=0)
    if hasattr(sd, "RCIGDistiller"):
        yield sd.RCIGDistiller(ipc=1, n_steps=2, batch_size=16, pool_size=2, online_steps=1,
                               n_inner=2, n_hinv=2, inner_learning_rate=1e-3,
                               hinv_learning_rate=1e-3, model=MLP(hidden_sizes=(8,)),
                               random_state=0, **TINY_EVAL)
    if hasattr(sd, "KRRDistiller"):
        yield sd.KRRDistiller(ipc=1, n_steps=2, n_networks=2, batch_size=16,
                              model=MLP(hidden_sizes=(8,)), random_state=0, **TINY_EVAL)
        yield sd.TranslatorDistiller(ipc=1, translator=sd.Translator(width=4, depth=1), n_steps=2,
                                     batch_size=16, adapt_steps=1, model=MLP(hidden_sizes=(8,)),
                                     random_state=0, **TINY_EVAL)


# A distiller is tagged as a classifier so that an integer ``cv`` over it is stratified; it has
# no ``predict`` (the networks its ``score`` trains have), so the classifier checks that call
# ``predict`` do not apply to it.
_NO_PREDICT = "a distiller has no predict: its score trains networks on the synthetic set"
_DISTILLER_CLASSIFIER_CHECKS = ("check_classifier_data_not_an_array", "check_classifiers_classes",
                                "check_classifiers_train", "check_supervised_y_2d")


def _expected_failed_checks(estimator):
    """Each expected failure with its reason."""
    from sklearn_distill.base import BaseDistiller

    if isinstance(estimator, BaseDistiller):
        return {name: _NO_PREDICT for name in _DISTILLER_CLASSIFIER_CHECKS}
    return {}


@parametrize_with_checks(list(_estimators()), expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def _distillers():
    return [e for e in _estimators() if isinstance(e, BaseDistiller)]


def _expected_failed_sampler_checks(distiller):
    """imbalanced-learn's checks that cannot apply, with the reason."""
    if distiller.__sklearn_tags__().input_tags.sparse:
        return {}
    # imbalanced-learn runs this check on every sampler that takes DataFrames, whatever its
    # sparse tag says; a learned distiller optimises dense rows and refuses sparse input.
    return {"check_samplers_pandas_sparse": "learned distillers refuse sparse input "
                                            "(input_tags.sparse=False); only the coresets take it"}


@parametrize_with_sampler_checks(_distillers(), expected_failed_checks=_expected_failed_sampler_checks)
def test_imblearn_compatible_sampler(estimator, check):
    check(estimator)


def test_every_public_distiller_is_a_checked_sampler():
    checked = {type(e).__name__ for e in _distillers()}
    public = {name for name in sd.__all__
              if isinstance(getattr(sd, name), type) and issubclass(getattr(sd, name), BaseDistiller)
              and not name.startswith("Base")}
    assert public <= checked, f"not covered by imbalanced-learn's checks: {public - checked}"
    assert all(is_sampler(d) for d in _distillers())


def test_every_public_estimator_is_checked():
    from sklearn.base import BaseEstimator

    checked = {type(e).__name__ for e in _estimators()}
    public = {name for name in sd.__all__
              if isinstance(getattr(sd, name), type) and issubclass(getattr(sd, name), BaseEstimator)
              and not name.startswith("Base")}
    assert public <= checked, f"not covered by the common checks: {public - checked}"
