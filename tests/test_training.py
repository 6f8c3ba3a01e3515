"""Tests for the shared training scaffold (_training) and the model pool (_pool)."""

import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sklearn_distill import MLP
from sklearn_distill import _pool
from sklearn_distill._backend import backend_context
from sklearn_distill._training import (centred_one_hot, divergence_causes, init_labels,
                                       init_synthetic, label_margin_loss, load_checkpoint,
                                       resolve_flip, restore_state, run_loop, save_checkpoint,
                                       select_tree)
from sklearn_distill.networks import with_num_classes


def test_init_synthetic_real_noise():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5)).astype(np.float32)
    y = np.repeat(np.arange(3), 20)
    key = jax.random.PRNGKey(0)
    xs, ys = init_synthetic(key, X, y, 3, 4, "real")
    assert xs.shape == (12, 5) and ys.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    for row, c in zip(xs, ys):  # every row is a distinct real row of its own class
        match = np.flatnonzero(np.all(X == row, axis=1))
        assert len(match) == 1 and y[match[0]] == c
    assert len({tuple(r) for r in xs}) == 12
    again, _ = init_synthetic(key, X, y, 3, 4, "real")
    np.testing.assert_array_equal(xs, again)  # a function of the key
    noise, _ = init_synthetic(key, X, y, 3, 4, "noise")
    assert not np.isin(noise, X).any()
    mixed, _ = init_synthetic(key, X, y, 3, 4, "real+noise")
    assert 0 < np.abs(mixed - xs).max() < 1.0
    with pytest.raises(ValueError, match="init"):
        init_synthetic(key, X, y, 3, 4, "zeros")


def test_labels_and_margin():
    np.testing.assert_allclose(centred_one_hot(np.array([1]), 4), [[-0.25, 0.75, -0.25, -0.25]])
    assert np.allclose(init_labels(np.array([0]), 10), centred_one_hot(np.array([0]), 10))
    np.testing.assert_allclose(init_labels(np.array([0]), 100),
                               centred_one_hot(np.array([0]), 100) / np.sqrt(10), rtol=1e-6)
    labels = jnp.array([[0.9, 0.1, 0.0], [0.2, 0.25, 0.0]])
    # margins 0.8 -> capped at 1/3, and 0.05
    assert float(label_margin_loss(labels)) == pytest.approx(-(1 / 3 + 0.05) / 2, rel=1e-6)


def test_checkpoint_roundtrip_and_mismatch(tmp_path):
    state = {"a": jnp.arange(3.0), "b": (jnp.ones((2, 2), jnp.int32), jnp.array(True))}
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, state, 7, {"lr": 0.1}, {"history": {"step": [1]}})
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # no temporary file left behind
    with np.load(path, allow_pickle=False) as f:  # readable without pickle
        assert "__meta__" in f.files
    restored, step, extra = restore_state(path, state, {"lr": 0.1})
    assert step == 7 and extra["history"] == {"step": [1]}
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)
        assert np.asarray(a).dtype == np.asarray(b).dtype
    with pytest.raises(ValueError, match="different configuration.*lr"):
        restore_state(path, state, {"lr": 0.2})
    with pytest.raises(ValueError, match="different structure"):
        restore_state(path, {"a": jnp.arange(4.0), "b": state["b"]}, {"lr": 0.1})
    leaves, meta = load_checkpoint(path)
    assert meta["step"] == 7 and len(leaves) == 3


@jax.jit
def _toy_step(state):
    """A guarded step: x <- x + 1, loss = 1 / (5 - x) (inf when x reaches 5)."""
    new = {"x": state["x"] + 1.0}
    loss = 1.0 / (5.0 - new["x"])
    ok = state["ok"] & jnp.isfinite(loss)
    new = select_tree(ok, new, {"x": state["x"]})
    return {**new, "ok": ok}, jnp.where(ok, loss, jnp.nan)


def test_run_loop_history_and_checkpoint(tmp_path):
    state = {"x": jnp.array(-100.0), "ok": jnp.array(True)}
    path = tmp_path / "loop.npz"
    result = run_loop(_toy_step, state, n_steps=10, log_every=4, checkpoint=path,
                      checkpoint_every=5, checkpoint_config={"k": 1})
    assert result.stop_reason == "done" and result.step == 10
    assert float(result.state["x"]) == -90.0
    assert result.history["step"] == [4, 8, 10]
    assert len(result.history["time"]) == 3 and np.all(np.diff(result.history["time"]) >= 0)
    _, step, _ = restore_state(path, state, {"k": 1})
    assert step == 10


def test_run_loop_divergence_keeps_last_good_state():
    state = {"x": jnp.array(0.0), "ok": jnp.array(True)}
    with pytest.warns(UserWarning, match="non-finite"):
        result = run_loop(_toy_step, state, n_steps=20, log_every=3)
    # x reaches 4 after 4 good steps; the 5th step (x=5) has an infinite loss.
    assert result.stop_reason == "diverged" and result.step == 4
    assert float(result.state["x"]) == 4.0 and bool(result.state["ok"])


def test_run_loop_names_the_causes_and_refuses_a_run_without_a_step():
    seen = []

    def diagnose(state, steps_taken):
        seen.append((float(state["x"]), steps_taken))
        return ["the toy cause"]

    with pytest.warns(UserWarning, match="Likely causes: the toy cause"):
        run_loop(_toy_step, {"x": jnp.array(0.0), "ok": jnp.array(True)}, n_steps=20,
                 diagnose=diagnose)
    assert seen == [(4.0, 4)]
    # From x = 4 the very first step is non-finite: the initial state is no result.
    with pytest.raises(FloatingPointError, match="no step was taken.*the toy cause"):
        run_loop(_toy_step, {"x": jnp.array(4.0), "ok": jnp.array(True)}, n_steps=20,
                 diagnose=diagnose)
    # A resumed run keeps what earlier steps learned: a warning, not an error.
    with pytest.warns(UserWarning, match="non-finite"):
        result = run_loop(_toy_step, {"x": jnp.array(4.0), "ok": jnp.array(True)}, n_steps=20,
                          start_step=7)
    assert result.step == 7 and result.stop_reason == "diverged"


def test_divergence_causes():
    rows = np.array([[0.0, 1.0], [0.0, 1.0], [2.0, 3.0]])
    causes = divergence_causes(rows, rows, ridge=0.0, learning_rate=1e-3, steps_taken=0)
    assert len(causes) == 2 and "singular: 1 of its 3 rows repeat" in causes[0]
    assert "`ridge`=0" in causes[1]  # no learning rate: no update happened before the failure
    causes = divergence_causes(rows[1:], rows * 1e6, ridge=1e-6, learning_rate=1e-3, steps_taken=3)
    assert "extreme values (largest |x| = 3e+06)" in causes[0] and "learning_rate" in causes[-1]
    causes = divergence_causes(rows[1:] * 1e5, rows, learning_rate=0.5, steps_taken=3)
    assert "grew to |x| = 3e+05" in causes[0] and causes[-1].startswith("otherwise")
    assert divergence_causes(rows[1:], rows, learning_rate=0.5) == [
        "a learning rate too large for this data (`learning_rate`=0.5)"]


def _digit_rows(n=200):
    """Digits as rows, and the same labels with every row of a class replaced by its first."""
    from sklearn_distill import load_digits_images

    X, y = load_digits_images(return_X_y=True)
    X, y = X[:n].reshape(n, -1), y[:n]
    return X, np.stack([X[y == c][0] for c in range(10)])[y], y


@pytest.mark.parametrize("method", ["frepo", "krr", "rcig", "ratbptt"])
def test_a_fit_that_took_no_step_raises_with_its_cause(method):
    import sklearn_distill as sd

    real, X, y = _digit_rows()
    tiny = dict(ipc=2, n_steps=2, model=MLP(hidden_sizes=(8,)), random_state=0)
    estimator, data, match = {
        # Singular kernel systems: repeated synthetic rows and no ridge.
        "frepo": (sd.FRePoDistiller(batch_size=32, pool_size=2, max_online_steps=2, ridge=0.0,
                                    **tiny), X, r"singular.*`ridge`=0"),
        "krr": (sd.KRRDistiller(n_networks=2, batch_size=16, ridge=0.0, **tiny), X,
                r"singular.*`ridge`=0"),
        # Extreme values in the data.
        "rcig": (sd.RCIGDistiller(batch_size=16, pool_size=2, online_steps=1, n_inner=2, n_hinv=2,
                                  inner_learning_rate=1e-3, hinv_learning_rate=1e-3, **tiny),
                 real * 1e30, r"extreme values \(largest \|x\| = 1e\+30\)"),
        "ratbptt": (sd.RaTBPTTDistiller(window=1, unroll=2, batch_size=16, init="real", **tiny),
                    real * 1e20, r"extreme values \(largest \|x\| = 1e\+20\)"),
    }[method]
    with pytest.raises(FloatingPointError, match="no step was taken.*" + match):
        estimator.fit(data, y)


def test_run_loop_interrupt():
    calls = []

    def step(state):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the step runs
        return _toy_step(state)

    state = {"x": jnp.array(-100.0), "ok": jnp.array(True)}
    with pytest.warns(UserWarning, match="interrupted at step 3"):
        result = run_loop(step, state, n_steps=10, log_every=100)
    assert result.stop_reason == "interrupted" and result.step == 3
    assert float(result.state["x"]) == -97.0


def test_pool_reset_schedule():
    model = with_num_classes(MLP(hidden_sizes=(4,)), 2)
    opt = _pool.pool_optimizer(1e-2)
    K, m = 3, 2
    pool = _pool.init_pool(jax.random.PRNGKey(0), model, (3,), m, K, opt)
    assert pool.steps.tolist() == [0, 1]  # staggered: (K // m) * i
    assert not np.allclose(pool.variables["params"]["head"]["kernel"][0],
                           pool.variables["params"]["head"]["kernel"][1])
    X = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)), jnp.float32)
    Y = jnp.asarray(centred_one_hot(np.arange(6) % 2, 2))
    update = jax.jit(lambda p, i, k, keep: _pool.online_update(
        p, i, k, X, Y, model=model, optimizer=opt, max_online_steps=K, keep=keep))

    def head(p, i):
        return np.asarray(p.variables["params"]["head"]["kernel"][i])

    counts, heads = [], [head(pool, 0)]
    for t in range(2 * K + 2):
        pool = update(pool, 0, jax.random.PRNGKey(t), True)
        counts.append(int(pool.steps[0]))
        heads.append(head(pool, 0))
    # K updates per life, then a re-initialisation (counter back to 0) instead of a (K+1)-th.
    assert counts == [1, 2, 3, 0, 1, 2, 3, 0]
    assert int(pool.steps[1]) == 1  # other members untouched
    # After the reset the weights are fresh: far from the trained ones, not a small step.
    assert not np.allclose(heads[4], heads[3], atol=1e-2)
    # Member 1 started with 1 on its counter, so its first life has K - 1 updates.
    for t in range(K - 1):
        pool = update(pool, 1, jax.random.PRNGKey(100 + t), True)
    assert int(pool.steps[1]) == K
    pool = update(pool, 1, jax.random.PRNGKey(200), True)
    assert int(pool.steps[1]) == 0
    before = jax.tree.map(np.asarray, pool)
    pool = update(pool, 0, jax.random.PRNGKey(300), False)  # keep=False: nothing changes
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(pool)):
        np.testing.assert_array_equal(a, b)


def test_pool_rcig_rule_counters_from_zero_and_replacement_after_training():
    # RCIG: every counter starts at 0; a member is replaced right after the training step that
    # brings its counter to K, so none with K updates is ever drawn.
    model = with_num_classes(MLP(hidden_sizes=(4,)), 2)
    opt = _pool.pool_optimizer(1e-2)
    K = 3
    pool = _pool.init_pool(jax.random.PRNGKey(0), model, (3,), 2, K, opt, stagger=False)
    assert pool.steps.tolist() == [0, 0]
    X = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)), jnp.float32)
    Y = jnp.asarray(centred_one_hot(np.arange(6) % 2, 2))
    update = jax.jit(lambda p, k: _pool.online_update(
        p, 0, k, X, Y, model=model, optimizer=opt, max_online_steps=K, replace="after_training"))
    counts = []
    for t in range(2 * K):
        pool = update(pool, jax.random.PRNGKey(t))
        counts.append(int(pool.steps[0]))
    assert counts == [1, 2, 0, 1, 2, 0]


def test_online_update_has_no_conditional_on_cpu_and_masks_skipped_steps():
    # XLA's CPU backend runs convolutions inside lax.cond many times slower, so on the CPU the
    # re-initialisation and the optional steps are computed and selected instead of branched.
    model = with_num_classes(MLP(hidden_sizes=(4,)), 2)
    opt = _pool.pool_optimizer(1e-2)
    pool = _pool.init_pool(jax.random.PRNGKey(0), model, (3,), 2, 4, opt)
    X = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)), jnp.float32)
    Y = jnp.asarray(centred_one_hot(np.arange(6) % 2, 2))

    def update(n_steps, max_steps):
        return jax.jit(lambda p, n: _pool.online_update(
            p, 1, jax.random.PRNGKey(1), X, Y, model=model, optimizer=opt, max_online_steps=4,
            n_steps=n, max_steps=max_steps))

    assert jax.default_backend() == "cpu"
    jaxpr = jax.make_jaxpr(lambda p, n: _pool.online_update(
        p, 1, jax.random.PRNGKey(1), X, Y, model=model, optimizer=opt, max_online_steps=4,
        n_steps=n, max_steps=5))(pool, jnp.asarray(2))
    assert "cond[" not in str(jaxpr)  # the printed jaxpr shows nested ones too
    for n in (1, 3):
        masked = update(None, 5)(pool, jnp.asarray(n))  # n traced, at most 5 steps
        looped = jax.jit(lambda p: _pool.online_update(  # n static: a plain loop
            p, 1, jax.random.PRNGKey(1), X, Y, model=model, optimizer=opt, max_online_steps=4,
            n_steps=n))(pool)
        for a, b in zip(jax.tree.leaves(masked), jax.tree.leaves(looped)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        assert int(masked.steps[1]) == int(pool.steps[1]) + n
    with backend_context(branch_free=False):  # the accelerator path, through the policy
        branched = update(None, 5)(pool, jnp.asarray(3))
        jaxpr = jax.make_jaxpr(lambda p, n: _pool.online_update(
            p, 1, jax.random.PRNGKey(1), X, Y, model=model, optimizer=opt, max_online_steps=4,
            n_steps=n, max_steps=5))(pool, jnp.asarray(2))
    assert "cond[" in str(jaxpr)
    for a, b in zip(jax.tree.leaves(branched), jax.tree.leaves(masked)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# -- many meta-steps per dispatch ----------------------------------------------------------------

_toy_meta_step = jax.jit(lambda state, config: _toy_step(state), static_argnames=("config",))


def _toy_block(k, sizes):
    """``run_steps`` over the toy step, recording the size of each dispatch."""
    from sklearn_distill._training import run_steps

    def block(state, n):
        sizes.append(n)
        return run_steps(state, n, (), step=_toy_meta_step, config=None, k=k)

    return block


def test_run_loop_blocks_stop_at_log_checkpoint_and_end_boundaries(tmp_path):
    sizes, path = [], tmp_path / "loop.npz"
    state = {"x": jnp.array(-100.0), "ok": jnp.array(True)}
    result = run_loop(_toy_step, state, n_steps=10, log_every=4, checkpoint=path,
                      checkpoint_every=5, checkpoint_config={"k": 1}, block_fn=_toy_block(3, sizes),
                      steps_per_dispatch=3)
    assert sizes == [3, 1, 1, 3, 2]  # to 3, log at 4, checkpoint at 5, 8 (log), end at 10
    assert result.stop_reason == "done" and result.step == 10
    assert float(result.state["x"]) == -90.0 and result.history["step"] == [4, 8, 10]
    state = {"x": jnp.array(-100.0), "ok": jnp.array(True)}  # the blocks donated the first
    assert restore_state(path, state, {"k": 1})[1] == 10
    single = run_loop(_toy_step, state, n_steps=10, log_every=4)
    np.testing.assert_allclose(result.history["loss"], single.history["loss"], rtol=1e-6)


@pytest.mark.parametrize("log_every", [3, 100])
def test_run_loop_divergence_inside_a_block_keeps_the_last_good_step(log_every):
    sizes = []
    state = {"x": jnp.array(0.0), "ok": jnp.array(True)}
    with pytest.warns(UserWarning, match="non-finite.*at step 5; .*state of step 4"):
        result = run_loop(_toy_step, state, n_steps=20, log_every=log_every,
                          block_fn=_toy_block(8, sizes), steps_per_dispatch=8)
    # The 5th step (x = 5) is the first non-finite one, inside a block of 3 or 8 steps.
    assert result.stop_reason == "diverged" and result.step == 4
    assert float(result.state["x"]) == 4.0 and bool(result.state["ok"])
    assert max(sizes) == min(8, log_every)


def _block_sizes(monkeypatch):
    """Record the size of every multi-step dispatch the gradient distillers make."""
    from sklearn_distill.methods import gradient, ratbptt

    sizes, real = [], gradient.run_steps

    def recording(state, n, *args, **kwargs):
        sizes.append(n)
        return real(state, n, *args, **kwargs)

    monkeypatch.setattr(gradient, "run_steps", recording)
    monkeypatch.setattr(ratbptt, "run_steps", recording)
    return sizes


def _tiny_distiller(method, **kw):
    import sklearn_distill as sd

    common = dict(ipc=1, n_steps=7, batch_size=32, pool_size=2, model=MLP(hidden_sizes=(16,)),
                  log_every=3, random_state=0)
    common.update(kw)
    if method == "frepo":
        return sd.FRePoDistiller(max_online_steps=3, **common)
    if method.startswith("ratbptt"):  # "ratbptt-device" / "ratbptt-host": where the prefix runs
        del common["pool_size"]
        return sd.RaTBPTTDistiller(window=1, unroll=3, init="real", inner_batch_size=10,
                                   prefix_loop=method.split("-")[1], **common)
    return sd.RCIGDistiller(online_steps=1, n_inner=1, n_hinv=1, inner_learning_rate=1e-3,
                            hinv_learning_rate=1e-3, **common)


@pytest.mark.parametrize("method", ["frepo", "rcig", "ratbptt-device", "ratbptt-host"])
def test_k_steps_in_one_call_equal_k_single_steps(method, monkeypatch):
    X, _, y = _digit_rows()
    single = _tiny_distiller(method).fit(X, y)
    sizes = _block_sizes(monkeypatch)
    with backend_context(steps_per_dispatch=4):
        blocked = _tiny_distiller(method).fit(X, y)
    if method == "ratbptt-host":
        assert sizes == []  # a prefix run from Python: one step per dispatch
    else:
        # Up to each log boundary (every 3 steps) and the end (7).
        assert sizes == [3, 3, 1], sizes
    if method.startswith("ratbptt"):
        np.testing.assert_array_equal(blocked.unroll_lengths_, single.unroll_lengths_)
    np.testing.assert_allclose(blocked.synthetic_X_, single.synthetic_X_, rtol=1e-6, atol=1e-6)
    if single.synthetic_y_soft_ is not None:
        np.testing.assert_allclose(blocked.synthetic_y_soft_, single.synthetic_y_soft_,
                                   rtol=1e-6, atol=1e-6)
    assert blocked.history_["step"] == single.history_["step"] == [3, 6, 7]
    np.testing.assert_allclose(blocked.history_["loss"], single.history_["loss"], rtol=1e-5)


def test_a_divergence_inside_a_block_stops_where_single_steps_stop(monkeypatch):
    X, _, y = _digit_rows()
    with pytest.warns(UserWarning, match="non-finite"):
        single = _tiny_distiller("frepo", n_steps=8, learning_rate=1e30, log_every=8).fit(X, y)
    sizes = _block_sizes(monkeypatch)
    with backend_context(steps_per_dispatch=8), pytest.warns(UserWarning, match="non-finite"):
        blocked = _tiny_distiller("frepo", n_steps=8, learning_rate=1e30, log_every=8).fit(X, y)
    assert sizes == [8] and 0 < blocked.n_iter_ == single.n_iter_ < 8
    assert blocked.stop_reason_ == "diverged"
    np.testing.assert_allclose(blocked.synthetic_X_, single.synthetic_X_, rtol=1e-6, atol=1e-6)


def test_blocks_checkpoint_interrupt_and_resume(tmp_path, monkeypatch):
    from sklearn_distill.methods import gradient

    X, _, y = _digit_rows()
    full = _tiny_distiller("frepo", n_steps=8).fit(X, y)
    path, real, sizes = tmp_path / "frepo.npz", gradient.run_steps, []

    def interrupted(state, n, *args, **kwargs):
        sizes.append(n)
        if len(sizes) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during the second dispatch
        return real(state, n, *args, **kwargs)

    monkeypatch.setattr(gradient, "run_steps", interrupted)
    kw = dict(n_steps=8, checkpoint=str(path), checkpoint_every=2, log_every=8)
    with backend_context(steps_per_dispatch=5):
        with pytest.warns(UserWarning, match="interrupted at step 4"):
            first = _tiny_distiller("frepo", **kw).fit(X, y)
        assert sizes == [2, 2] and first.n_iter_ == 4  # each dispatch ends at a checkpoint
        resumed = _tiny_distiller("frepo", **kw).fit(X, y)
    assert resumed.n_iter_ == 8 and sizes == [2, 2, 2, 2]
    assert resumed.history_["step"] == [4, 8]
    np.testing.assert_allclose(resumed.synthetic_X_, full.synthetic_X_, rtol=1e-6, atol=1e-6)


def test_online_update_batch_trains_on_the_gathered_rows_only():
    # With batch_size < n the member trains on `batch_size` gathered rows, exactly as if only
    # those rows had been given; the other rows (NaN here) are never touched.
    model = with_num_classes(MLP(hidden_sizes=(4,)), 2)
    opt = _pool.pool_optimizer(1e-2)
    pool = _pool.init_pool(jax.random.PRNGKey(0), model, (3,), 2, 4, opt)
    key = jax.random.PRNGKey(5)
    rows = jax.random.choice(jax.random.split(key)[1], 10, (4,), replace=False)
    X = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    X[np.setdiff1d(np.arange(10), np.asarray(rows))] = np.nan
    Y = jnp.asarray(centred_one_hot(np.arange(10) % 2, 2))
    update = jax.jit(lambda x, y, b: _pool.online_update(
        pool, 1, key, x, y, model=model, optimizer=opt, max_online_steps=4, batch_size=b),
        static_argnums=2)
    batched = update(jnp.asarray(X), Y, 4)
    direct = update(jnp.asarray(X)[rows], Y[rows], None)
    for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(direct)):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("method, shape, n_classes, ipc, expected", [
    # yongchao97/FRePo script/distill.py:147-189
    ("frepo", (28, 28, 1), 10, 10, False),      # MNIST, Fashion-MNIST: greyscale
    ("frepo", (32, 32, 3), 10, 50, True),       # CIFAR-10
    ("frepo", (32, 32, 3), 100, 1, True),       # CIFAR-100 ipc 1
    ("frepo", (32, 32, 3), 100, 10, False),     # CIFAR-100 ipc 10, 50
    ("frepo", (32, 32, 3), 100, 50, False),
    ("frepo", (64, 64, 3), 200, 1, True),       # Tiny ImageNet ipc 1
    ("frepo", (64, 64, 3), 200, 10, False),     # Tiny ImageNet ipc 10
    ("frepo", (64, 64, 3), 1000, 1, False),     # ImageNet 64x64
    # yolky/RCIG readme.md:20-27 with configs_final/*.txt (use_flip)
    ("rcig", (32, 32, 3), 100, 10, True),       # CIFAR-100 ipc 10: depth_3.txt
    ("rcig", (32, 32, 3), 100, 50, False),      # CIFAR-100 ipc 50: cifar100_50.txt
    ("rcig", (64, 64, 3), 200, 1, True),        # Tiny ImageNet ipc 1: depth_4_200.txt
    ("rcig", (64, 64, 3), 200, 10, False),      # Tiny ImageNet ipc 10: depth_4_big.txt
    ("rcig", (64, 64, 3), 1000, 2, False),      # ImageNet: depth_4_big.txt
    ("rcig", (128, 128, 3), 10, 10, True),      # ImageNette, ImageWoof: depth_5.txt
    (None, (32, 32, 3), 100, 50, True),         # no method: every RGB set
])
def test_resolve_flip_follows_each_methods_official_rules(method, shape, n_classes, ipc,
                                                          expected):
    assert resolve_flip("auto", shape, n_classes=n_classes, ipc=ipc, method=method) is expected
    assert resolve_flip(False, shape, n_classes=n_classes, ipc=ipc, method=method) is False
    if shape[-1] == 3:
        assert resolve_flip(True, shape, n_classes=n_classes, ipc=ipc, method=method) is True
