"""Tests for the translator, its cache, pre-training and adaptation."""

import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from sklearn_distill import (ConvNet, ImageStandardizer, PretrainedTranslator, RandomDistiller,
                             Translator, TranslatorCache, TranslatorDistiller, load_digits_images,
                             pretrain_translator)
from sklearn_distill._jax import library_prng
from sklearn_distill.evaluation import evaluate
from sklearn_distill.methods.translator.network import module_from_json, module_to_json

TINY = ConvNet(width=8, depth=2)
TINY_T = Translator(width=4, depth=1)
CACHE = dict(c_min=2, c_max=4, max_images=8, n_real=64, n_steps=6, model=TINY, random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images(return_X_y=True)
    return X[:400], y[:400]


@pytest.fixture(scope="module")
def cache(digits, tmp_path_factory):
    X, y = digits
    return TranslatorCache(tmp_path_factory.mktemp("cache"), **CACHE).extend(X, y, n_tasks=4)


def translated(**kw):
    params = dict(ipc=1, translator=TINY_T, n_steps=6, batch_size=128, model=TINY, adapt_steps=0,
                  log_every=2, n_eval_models=1, eval_steps=20, random_state=0)
    params.update(kw)
    return TranslatorDistiller(**params)


# -- the translator -------------------------------------------------------------------------------

def test_untrained_translator_is_the_identity(digits):
    net = Translator(width=4, depth=2)
    with library_prng():  # as the library traces it (much faster to compile on CPU)
        for shape in ((7, 7, 3), (1, 1, 5)):  # odd sizes; tabular rows as 1x1 images
            x = jax.random.normal(jax.random.PRNGKey(0), (3,) + shape)
            variables = jax.jit(net.init)(jax.random.PRNGKey(1), x)
            np.testing.assert_array_equal(np.asarray(jax.jit(net.apply)(variables, x)),
                                          np.asarray(x))
    X, y = digits
    fitted = translated().fit(X, y)  # no pre-training, no adaptation: the single-network set
    np.testing.assert_array_equal(fitted.synthetic_X_, fitted.single_network_X_)
    assert fitted.translator_.metadata["trained_steps"] == 0 and fitted.adaptation_ is None


def test_translator_save_load_other_resolution_and_channels(tmp_path, digits):
    rng = np.random.default_rng(0)
    t = PretrainedTranslator.identity(TINY_T, channels=1, random_state=0)
    # Perturb the zero-initialised output layer so that the map is not the identity.
    t.params["out"]["kernel"] = rng.normal(size=t.params["out"]["kernel"].shape).astype(np.float32)
    path = t.save(tmp_path / "translator")
    assert path.endswith(".npz")
    with np.load(path, allow_pickle=False) as data:  # plain arrays and a JSON block
        assert "__meta__" in data.files
    loaded = PretrainedTranslator.load(path)
    x8, x16 = rng.normal(size=(2, 8, 8, 1)), rng.normal(size=(2, 16, 16))
    np.testing.assert_array_equal(loaded.translate(x8), t.translate(x8))
    assert not np.allclose(loaded.translate(x8), x8)
    assert loaded.translate(x16).shape == (2, 16, 16)  # fully convolutional: any resolution
    assert "Translator(width=4, depth=1)" in repr(loaded)
    with pytest.raises(ValueError, match="X.*1 channel.*3"):
        loaded.translate(rng.normal(size=(2, 8, 8, 3)))
    X, y = digits
    by_path = translated(translator=path).fit(X, y)
    by_object = translated(translator=loaded).fit(X, y)
    np.testing.assert_array_equal(by_path.synthetic_X_, by_object.synthetic_X_)
    np.testing.assert_array_equal(by_path.synthetic_X_,
                                  loaded.translate(by_path.single_network_X_))
    with pytest.raises(ValueError, match="translator.*1 channel"):
        translated(translator=loaded).fit(np.repeat(X.reshape(-1, 8, 8, 1), 3, axis=-1), y)
    with pytest.raises(ValueError, match="not a saved translator"):
        np.savez(tmp_path / "other.npz", a=np.zeros(2))
        PretrainedTranslator.load(tmp_path / "other.npz")



def test_translator_output_keeps_each_samples_mean_and_std():
    # The KRR loss does not hold the output scale (see Translator); the anchor must, whatever the
    # parameters. A constant (zero-padded) sample must not give a non-finite gradient.
    rng = np.random.default_rng(0)
    with library_prng():
        for shape in ((8, 8, 2), (1, 1, 6)):  # images; tabular rows as 1x1 images
            xs = rng.normal(0.3, 2.0, size=(4,) + shape).astype(np.float32)
            xs[3] = 0.0
            xs = jnp.asarray(xs)
            anchored, free = Translator(width=4, depth=1), Translator(width=4, depth=1,
                                                                       match_moments=False)
            params = jax.jit(anchored.init)(jax.random.PRNGKey(1), xs)["params"]
            params = jax.tree.map(lambda p: p + 0.5 * jax.random.normal(jax.random.PRNGKey(2),
                                                                         p.shape), params)
            out_a = np.asarray(anchored.apply({"params": params}, xs))
            out_f = np.asarray(free.apply({"params": params}, xs))
            axes = tuple(range(1, xs.ndim))
            xs = np.asarray(xs)
            np.testing.assert_allclose(out_a.mean(axes), xs.mean(axes), atol=1e-4)
            np.testing.assert_allclose(out_a.std(axes), xs.std(axes), rtol=1e-4, atol=1e-5)
            assert not np.allclose(out_f[:3].std(axes), xs[:3].std(axes), rtol=1e-2)
            assert not np.allclose(out_a, xs, atol=1e-2)  # the anchor leaves the shape free
            grads = jax.grad(lambda p: jnp.sum(anchored.apply({"params": p}, xs) ** 2))(params)
            assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_translators_saved_without_the_anchor_load_without_it(tmp_path):
    t = PretrainedTranslator.identity(Translator(width=4, depth=1, match_moments=False), channels=1)
    loaded = PretrainedTranslator.load(t.save(tmp_path / "free"))
    assert loaded.network.match_moments is False and "match_moments=False" in repr(loaded)
    spec = module_to_json(Translator(width=4, depth=1))
    assert spec["fields"]["match_moments"] is True
    del spec["fields"]["match_moments"]  # a file written before the field existed
    assert module_from_json(spec).match_moments is False
    assert module_from_json(module_to_json(Translator())).match_moments is True

# -- stage 1: the cache ---------------------------------------------------------------------------

def test_cache_extend_checks_n_tasks_before_touching_the_data(tmp_path):
    from sklearn.utils._param_validation import InvalidParameterError

    cache = TranslatorCache(tmp_path / "c", **CACHE)
    for bad in (-1, 2.5, "4"):
        with pytest.raises(InvalidParameterError, match="'n_tasks' parameter"):
            cache.extend(np.zeros((4, 8, 8, 1)), np.arange(4) % 2, n_tasks=bad)
    assert not (tmp_path / "c").exists()


def test_cache_round_trips_resumes_and_checks_its_configuration(cache, digits, tmp_path):
    X, y = digits
    tasks = cache.tasks()
    assert [t.index for t in tasks] == [0, 1, 2, 3]
    for t in tasks:
        assert 2 <= len(t.classes) <= 4 and len(t.X) == len(t.classes) * t.ipc <= 8
        assert t.labels.shape == (len(t.X), len(t.classes)) and len(t.rows) == 64
        assert set(np.unique(y[t.rows])) <= set(t.classes)
        assert t.loss_last < t.loss_first  # each single-network distillation lowers its loss
    reopened = TranslatorCache.open(cache.directory)
    assert reopened.config == cache.config and len(reopened) == 4
    np.testing.assert_array_equal(reopened[2].X, tasks[2].X)
    # Extending computes only the missing sub-tasks, and they equal those of a one-go build
    # (run in parallel here): every sub-task depends on the seed and its index only.
    extended = TranslatorCache(tmp_path / "ext", **CACHE)
    extended.extend(X, y, n_tasks=2)

    def written():  # each sub-task file with the time it was written
        return {i: os.stat(os.path.join(extended.directory, f"task_{i:06d}.npz")).st_mtime_ns
                for i in extended.indices()}

    first = written()
    extended.extend(X, y, n_tasks=4, n_jobs=2)
    after = written()
    assert sorted(after) == [0, 1, 2, 3] and {i: after[i] for i in first} == first
    extended.extend(X, y, n_tasks=4)
    assert written() == after  # nothing left to compute
    for a, b in zip(extended.tasks(), tasks):
        np.testing.assert_array_equal(a.rows, b.rows)
        np.testing.assert_allclose(a.X, b.X, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="another configuration.*n_steps"):
        TranslatorCache(cache.directory, **{**CACHE, "n_steps": 7})
    with pytest.raises(ValueError, match="other data"):
        TranslatorCache.open(cache.directory).extend(X[:300], y[:300], n_tasks=5)
    with pytest.raises(ValueError, match="c_min"):
        TranslatorCache(tmp_path / "bad", **{**CACHE, "c_min": 5})
    with pytest.raises(ValueError, match="c_max.*classes"):
        TranslatorCache(tmp_path / "bad", **{**CACHE, "c_max": 11, "max_images": 20}).extend(
            X, y, n_tasks=1)
    with pytest.raises(ValueError, match="max_images"):
        TranslatorCache(tmp_path / "bad", **{**CACHE, "max_images": 1})


# -- stages 2 and 3 --------------------------------------------------------------------------------

def test_pretraining_lowers_its_loss_and_continues(cache, digits):
    X, y = digits
    pre = pretrain_translator(cache, X, y, translator=TINY_T, n_steps=30, learning_rate=3e-3,
                              tasks_per_step=2, n_eval=4, log_every=10, random_state=0)
    record = pre.metadata["pretraining"][0]
    assert record["steps"] == 30 and record["n_tasks"] == 4
    assert record["validation_loss_after"] < record["validation_loss_before"]
    assert not np.allclose(pre.params["out"]["kernel"], 0)  # no longer the identity
    more = pretrain_translator(cache.directory, X, y, translator=pre, n_steps=2, tasks_per_step=2,
                               n_eval=0, random_state=1)
    assert more.metadata["trained_steps"] == 32 and len(more.metadata["pretraining"]) == 2
    with pytest.raises(ValueError, match="other data"):
        pretrain_translator(cache, X[:100], y[:100], n_steps=1)


def test_target_is_distilled_in_the_network_the_translator_was_pretrained_on(cache, digits,
                                                                            tmp_path):
    # Liu & Wang, Alg. 3: the target's single-network distillation runs in the cache's fixed
    # network, whose distillations the translator learned to translate.
    X, y = digits
    pre = pretrain_translator(cache, X, y, translator=TINY_T, n_steps=2, tasks_per_step=1,
                              n_eval=0, random_state=0)
    net_model, variables = pre.distillation_network
    cache_model, cache_variables = cache.distillation_network()
    assert module_to_json(net_model) == module_to_json(cache_model)
    jax.tree.map(np.testing.assert_array_equal, variables, cache_variables)
    back = PretrainedTranslator.load(pre.save(tmp_path / "t"))
    jax.tree.map(np.testing.assert_array_equal, back.distillation_network[1], cache_variables)

    without = pre.copy()
    without.distillation_network = None  # no network recorded: a random one, as "random"
    other = pre.copy()
    with library_prng():
        other.distillation_network = (net_model, jax.device_get(
            net_model.init(jax.random.PRNGKey(7), jnp.zeros((1, 8, 8, 1)))))
    fits = {name: translated(translator=t, **kw).fit(X, y).single_network_X_
            for name, t, kw in [("cache", back, {}), ("other", other, {}),
                                ("random", back, {"distillation_network": "random"}),
                                ("none", without, {})]}
    np.testing.assert_array_equal(fits["random"], fits["none"])
    assert not np.allclose(fits["cache"], fits["random"])
    assert not np.allclose(fits["cache"], fits["other"])  # the translator's network is used


def test_adaptation_lowers_its_loss_and_serves_other_ipc(digits):
    X, y = digits
    fitted = translated(adapt_ipc=(1, 2), adapt_steps=30, adapt_learning_rate=3e-3).fit(X, y)
    record = fitted.adaptation_
    assert record["steps"] == 30 and record["adapt_ipc"] == [1, 2]
    assert record["validation_loss_after"] < record["validation_loss_before"]
    assert not np.allclose(fitted.synthetic_X_, fitted.single_network_X_)
    assert fitted.translator_.metadata["trained_steps"] == 30
    assert all(isinstance(a, np.ndarray) for a in jax.tree.leaves(fitted.translator_.params))
    # The adapted translator at an ipc it was not adapted at, without further adaptation.
    other = translated(ipc=3, translator=fitted.translator_).fit(X, y)
    np.testing.assert_allclose(other.synthetic_X_,
                               fitted.translator_.translate(other.single_network_X_), atol=1e-6)
    assert other.synthetic_X_.shape == (30, 8, 8, 1)
    clone = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(clone.synthetic_X_, fitted.synthetic_X_)


@pytest.mark.parametrize("make, match", [
    (lambda: translated(adapt_steps=1, adapt_ipc=(1, 100)), "adapt_ipc"),
    (lambda: translated(adapt_steps=1, adapt_ipc=(0,)), "adapt_ipc"),
    (lambda: translated(translator=3), "translator"),
    (lambda: translated(translator=PretrainedTranslator.identity(TINY_T, channels=3)), "translator"),
])
def test_bad_parameters(digits, make, match):
    X, y = digits
    with pytest.raises(ValueError, match=match):
        make().fit(X, y)


def test_translated_set_beats_single_network_and_random_on_digits():
    X, y = load_digits_images(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.4, stratify=y, random_state=0)
    scaler = ImageStandardizer().fit(X_tr)
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    model = ConvNet(width=16, depth=2)
    common = dict(n_eval_models=4, eval_steps=300, eval_model=model, random_state=0)
    fitted = TranslatorDistiller(ipc=1, translator=Translator(width=16, depth=2), n_steps=100,
                                 batch_size=512, adapt_steps=100, model=model,
                                 **common).fit(X_tr, y_tr)
    acc = fitted.score(X_te, y_te)
    single = evaluate(fitted.single_network_X_, fitted.synthetic_y_, X_te, y_te,
                      soft_labels=fitted.synthetic_y_soft_, n_models=4, model=model, n_steps=300,
                      random_state=fitted._eval_seed()).mean  # the networks score() trains
    rand = RandomDistiller(ipc=1, **common).fit(X_tr, y_tr).score(X_te, y_te)
    # Measured: 77.1, 73.7, 59.6 (76.5 without the scale anchor, whose set's std drifts to 1.42);
    # 72.0, 67.6, 58.5 with the evaluation networks seeded by a seed split from random_state.
    assert acc > single + 0.01 and acc > rand + 0.1, (acc, single, rand)
