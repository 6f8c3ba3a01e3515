"""Tests for BoostedDistiller (Boost-DD)."""

import numpy as np
import pytest

from sklearn_distill import (BoostedDistiller, ConvNet, FRePoDistiller, HerdingDistiller,
                             RaTBPTTDistiller, load_digits_images)

TINY = ConvNet(width=8, depth=2, norm="instance")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images(return_X_y=True)
    return X[:300], y[:300]


def tiny(**kw):
    """The tiny RaT-BPTT configuration of test_ratbptt.py (the prefix inside the jitted step)."""
    params = dict(ipc=1, n_steps=6, window=2, unroll=4, batch_size=64, model=TINY, log_every=2,
                  prefix_loop="device", n_eval_models=1, eval_steps=20, random_state=0)
    params.update(kw)
    return RaTBPTTDistiller(**params)


def test_boost_beta_zero_freezes_earlier_blocks(digits):
    X, y = digits
    base = tiny(n_steps=4)
    two = BoostedDistiller(base, block_ipc=1, n_blocks=2, beta=0.0, random_state=3).fit(X, y)
    assert two.synthetic_X_.shape == (20, 8, 8, 1)
    assert two.block_.tolist() == [0] * 10 + [1] * 10
    assert two.synthetic_y_.tolist() == list(range(10)) * 2
    # Block 0 is the first block's own fit, left bit-for-bit alone while block 1 trained.
    alone = tiny(n_steps=4, random_state=3).fit(X, y)
    np.testing.assert_array_equal(two.synthetic_X_[:10], alone.synthetic_X_)
    assert not np.allclose(two.synthetic_X_[10:], two.synthetic_X_[:10])
    assert two.n_iter_ == 8 and two.history_["block"] == [0, 0, 1, 1]
    assert two.history_["step"] == [2, 4, 6, 8]
    sub = two.first_blocks(1)
    np.testing.assert_array_equal(sub.synthetic_X_, alone.synthetic_X_)
    assert sub.sampling_strategy_[0] == 1 and sub.synthetic_y_.tolist() == list(range(10))
    assert two.synthetic_X_.shape == (20, 8, 8, 1)  # the copy leaves the whole set alone
    assert 0.0 <= sub.score(X[:50], y[:50]) <= 1.0
    with pytest.raises(ValueError, match="k"):
        two.first_blocks(3)
    with pytest.raises(ValueError, match="distiller"):
        BoostedDistiller(HerdingDistiller(), n_blocks=2).fit(X, y)
    with pytest.raises(ValueError, match="beta"):
        BoostedDistiller(tiny(), beta=2.0).fit(X, y)
    # beta > 0 trains the earlier blocks on.
    moving = BoostedDistiller(base, block_ipc=1, n_blocks=2, beta=1.0, random_state=3).fit(X, y)
    assert not np.array_equal(moving.synthetic_X_[:10], alone.synthetic_X_)
    np.testing.assert_array_equal(moving.synthetic_X_[:10] != alone.synthetic_X_,
                                  np.ones_like(alone.synthetic_X_, bool))



@pytest.mark.skipif(not getattr(FRePoDistiller, "_supports_warm_start", False),
                    reason="FRePo cannot continue from an earlier synthetic set yet")
def test_boost_frepo_beta_zero(digits):
    X, y = digits
    frepo = FRePoDistiller(ipc=1, n_steps=3, batch_size=64, pool_size=2, max_online_steps=3,
                           model=ConvNet(width=8, depth=2, norm="batch"), log_every=3)
    two = BoostedDistiller(frepo, n_blocks=2, beta=0.0, random_state=0).fit(X, y)
    alone = frepo.set_params(random_state=0).fit(X, y)
    np.testing.assert_array_equal(two.synthetic_X_[:10], alone.synthetic_X_)
    assert not np.allclose(two.synthetic_X_[10:], alone.synthetic_X_)
