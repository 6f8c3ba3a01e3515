"""The named evaluation protocols, part by part, against the values of the official code."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sklearn_distill import FRePoDistiller, RaTBPTTDistiller, RCIGDistiller, RandomDistiller
from sklearn_distill.evaluation import NeuralNetClassifier, default_eval_steps
from sklearn_distill.protocols import EvalProtocol, frepo_steps, get_protocol, rcig_steps

# Soft labels of the two kinds: regression targets (centred one-hot) and probability rows.
REGRESSION = np.array([[0.5, -0.5], [-0.5, 0.5]])
PROBABILITIES = np.array([[0.7, 0.3], [0.2, 0.8]])


def _rates(protocol, n_steps, steps, augmented=True):
    fn = protocol.schedule_fn(n_steps, augmented)
    return np.array([float(fn(s)) for s in steps])


def test_library_protocol_keeps_the_former_values():
    p = get_protocol("library")
    assert (p.optimizer, p.learning_rate, p.batch, p.batch_size) == ("adam", 1e-3, "replace", 256)
    assert [p.n_steps(n) for n in (10, 100, 500, 5000)] == [1000, 2000, 5000, 10000]
    assert p.n_steps(200) == default_eval_steps(200)
    # 10 % warm-up, cosine to 0
    np.testing.assert_allclose(_rates(p, 1000, [0, 50, 100, 550, 1000]),
                               [0, 5e-4, 1e-3, 5e-4, 0], atol=1e-9)
    assert (p.loss(REGRESSION), p.loss(PROBABILITIES), p.loss(None)) == ("mse", "ce", "ce")


def test_frepo_schedule_and_step_table():
    p = get_protocol("frepo")
    # script/eval.py: Adam 3e-4, 500 warm-up steps from 0, cosine to 1 % over N - 500 steps
    np.testing.assert_allclose(_rates(p, 2000, [0, 250, 500, 1250, 2000, 2500]),
                               [0, 1.5e-4, 3e-4, 3e-4 * (0.01 + 0.99 * 0.5), 3e-6, 3e-6],
                               rtol=1e-5, atol=1e-12)
    table = {10: 1000, 100: 2000, 200: 20000, 400: 5000, 500: 5000, 1000: 10000, 2000: 40000,
             5000: 40000}
    assert {n: p.n_steps(n) for n in table} == table
    assert {n: frepo_steps(n) for n in (5, 50, 300, 20000)} == {5: 1000, 50: 2000, 300: 5000,
                                                               20000: 40000}
    # a shortened run warms up over half of it
    np.testing.assert_allclose(_rates(p, 100, [25, 50]), [1.5e-4, 3e-4], rtol=1e-5)
    assert (p.loss(REGRESSION), p.loss(PROBABILITIES), p.loss(None)) == ("mse", "mse", "mse")


def test_rcig_schedule_steps_and_mirror():
    p = get_protocol("rcig")
    assert (rcig_steps(10), rcig_steps(100), rcig_steps(1000)) == (1000, 2000, 2000)
    # without augmentation (the published setting) 2.5 N steps run; the schedule spans N
    assert (p.n_steps(10, augmented=False), p.n_steps(100, augmented=False)) == (2500, 5000)
    assert p.n_steps(100, augmented=True) == 2000
    np.testing.assert_allclose(_rates(p, 5000, [0, 250, 500, 2000, 4999], augmented=False),
                               [0, 5e-5, 1e-4, 1e-6, 1e-6], rtol=1e-5, atol=1e-12)
    assert p.image_augmentation((32, 32, 3)) is None and p.mirror


def test_ratbptt_and_dc_optimisers():
    r = get_protocol("ratbptt")
    np.testing.assert_allclose(_rates(r, 3000, [0, 1500, 2999]), 1e-3)
    assert r.n_steps(100) == r.n_steps(5000) == 3000
    assert (r.loss(REGRESSION), r.loss(PROBABILITIES), r.loss(None)) == ("mse", "ce", "ce")
    d = get_protocol("dc")
    # 1,001 epochs of ceil(n / 256) batches; the rate / 10 after 502 epochs
    assert (d.n_steps(100), d.n_steps(500), d.n_steps(100, augmented=False)) == (1001, 2002, 301)
    np.testing.assert_allclose(_rates(d, 1001, [0, 501, 502, 1000]), [0.01, 0.01, 1e-3, 1e-3],
                               rtol=1e-6)
    np.testing.assert_allclose(_rates(d, 2002, [1003, 1004]), [0.01, 1e-3], rtol=1e-6)


def test_dc_sgd_matches_pytorch_and_restarts_momentum():
    d = dataclasses.replace(get_protocol("dc"), drop_fraction=0.5)
    opt = d.make_optimizer(4)
    params = {"w": jnp.array([1.0])}
    state = opt.init(params)
    grad = {"w": jnp.array([2.0])}
    steps = []
    for _ in range(4):
        update, state = opt.update(grad, state, params)
        steps.append(float(update["w"][0]))
    g = 2.0 + 5e-4 * 1.0  # coupled weight decay (params held fixed here)
    # momentum buffer g, 1.9 g, then restarted at the drop: g, 1.9 g at a tenth of the rate
    np.testing.assert_allclose(steps, [-0.01 * g, -0.01 * 1.9 * g, -0.001 * g, -0.001 * 1.9 * g],
                               rtol=1e-6)


def _batches(protocol, n, steps, seed=0):
    epoch_base = jax.random.key(seed + 100)
    out = []
    for step in steps:
        idx, w = protocol.select_batch(jax.random.fold_in(jax.random.key(seed), step),
                                       lambda e: jax.random.fold_in(epoch_base, e), step, n)
        out.append((np.asarray(idx), np.asarray(w)))
    return out


def test_batches_of_each_protocol():
    # FRePo: min(n, 500) consecutive rows of the repeated set, in order
    (a, _), (b, _) = _batches(get_protocol("frepo"), 1200, [0, 3])
    np.testing.assert_array_equal(a, np.arange(500))
    np.testing.assert_array_equal(b, (1500 + np.arange(500)) % 1200)
    (whole, _), = _batches(get_protocol("frepo"), 300, [7])
    np.testing.assert_array_equal(whole, np.arange(300))
    # RCIG: 256 rows without replacement; a mirrored set of up to 2 x 256 rows is used whole
    (c, _), = _batches(get_protocol("rcig"), 1000, [0])
    assert len(c) == 256 and len(set(c.tolist())) == 256
    assert len(_batches(get_protocol("rcig"), 500, [0])[0][0]) == 500
    unmirrored = dataclasses.replace(get_protocol("rcig"), mirror=False)
    assert len(_batches(unmirrored, 300, [0])[0][0]) == 256
    # DC: an epoch of 300 rows is a permutation in batches of 256 and 44 (padding weighted 0)
    (e0, w0), (e1, w1), (e2, _) = _batches(get_protocol("dc"), 300, [0, 1, 2])
    assert w0.sum() == 256 and w1.sum() == 44
    np.testing.assert_array_equal(np.sort(np.concatenate([e0, e1[:44]])), np.arange(300))
    assert not np.array_equal(e2, e0)  # reshuffled every epoch
    # library: with replacement
    (f, _), = _batches(get_protocol("library"), 300, [0])
    assert len(f) == 256 and len(set(f.tolist())) < 256


def test_augmentation_sets_and_granularity():
    rgb, grey = (32, 32, 3), (28, 28, 1)
    frepo = get_protocol("frepo").image_augmentation(rgb)
    assert (frepo.style, frepo.mode, frepo.enabled) == (
        "augmax", "one_per_batch", ("colour", "crop", "cutout", "flip", "scale", "rotate"))
    assert (frepo.brightness, frepo.colour_log_range, frepo.scale_ratio, frepo.crop_ratio,
            frepo.rotate_degrees, frepo.cutout_ratio) == (0.5, 0.25, 0.25, 0.125, 15.0, 0.25)
    assert not get_protocol("frepo").image_augmentation(grey).flip
    rcig = dataclasses.replace(get_protocol("rcig"), augmentation="augmax_image")
    assert rcig.image_augmentation(rgb).mode == "one"
    assert rcig.image_augmentation(grey).enabled == ("crop", "cutout", "scale", "rotate")
    rat = get_protocol("ratbptt").image_augmentation(rgb)
    assert (rat.enabled, rat.mode, rat.rotate_degrees) == (("flip", "rotate"), "one_per_batch", 15.0)
    dc = get_protocol("dc").image_augmentation(grey)
    assert (dc.style, dc.mode, len(dc.enabled)) == ("dsa", "one_per_batch", 6)
    assert (dc.brightness, dc.saturation, dc.contrast, dc.scale_ratio, dc.cutout_ratio) == (
        1.0, 2.0, 0.5, 0.2, 0.5)
    lib = get_protocol("library").image_augmentation(rgb)
    assert lib.mode == "one" and get_protocol("library").image_augmentation((64,)) is None


def test_protocol_validation():
    with pytest.raises(ValueError, match="protocol"):
        get_protocol("kip")
    with pytest.raises(ValueError, match="batch"):
        EvalProtocol("x", batch="random")
    with pytest.raises(ValueError, match="protocol"):
        NeuralNetClassifier(protocol="kip").fit(np.zeros((4, 3)), [0, 1, 0, 1])


def test_distillers_score_under_their_papers_protocol():
    assert FRePoDistiller().eval_protocol == "frepo"
    assert RCIGDistiller().eval_protocol == "rcig"
    assert RaTBPTTDistiller().eval_protocol == "ratbptt"
    assert RandomDistiller().eval_protocol == "library"
    # ... and score/evaluate train under it.
    from sklearn_distill import MLP

    X = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    y = np.arange(40) % 2
    fitted = RandomDistiller(ipc=2, eval_protocol="dc", eval_steps=2, n_eval_models=1,
                             eval_model=MLP(hidden_sizes=(4,)), random_state=0).fit(X, y)
    assert fitted.evaluate(X, y).protocol == "dc"


def test_evaluate_applies_the_protocol(monkeypatch):
    # The protocol reaches the trainer, with its mirror images, steps, loss and overrides.
    import sklearn_distill.evaluation as evaluation

    seen = {}

    def fake_train(key, model, X, targets, **kwargs):
        seen.update(kwargs, n_rows=X.shape[0], X=np.asarray(X), targets=np.asarray(targets))
        raise RuntimeError("stop")

    monkeypatch.setattr(evaluation, "train_networks", fake_train)
    X = np.random.default_rng(0).normal(size=(20, 8, 8, 3)).astype(np.float32)
    y = np.repeat(np.arange(10), 2)
    with pytest.raises(RuntimeError, match="stop"):
        NeuralNetClassifier(protocol="rcig").fit(X, y)
    assert (seen["n_rows"], seen["n_steps"], seen["loss"]) == (40, 5000, "mse")
    assert seen["augmentation"] is None and seen["protocol"].name == "rcig"
    # The mirror images are the left-right flips of the set, with the same targets.
    np.testing.assert_array_equal(seen["X"][20:], seen["X"][:20, :, ::-1])
    np.testing.assert_array_equal(seen["targets"][20:], seen["targets"][:20])
    with pytest.raises(RuntimeError, match="stop"):
        NeuralNetClassifier(protocol="dc", learning_rate=0.05, n_steps=7).fit(X, y)
    assert (seen["n_rows"], seen["n_steps"], seen["loss"]) == (20, 7, "ce")
    assert seen["protocol"].learning_rate == 0.05 and seen["protocol"].optimizer == "sgd"
