"""Tests for the backend policy (sklearn_distill._backend)."""

import jax
import pytest

from sklearn_distill import _backend
from sklearn_distill._backend import backend_context, get_backend_policy, set_backend_policy


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the expected values are the CPU's")
def test_policy_is_resolved_from_the_backend_and_scoped():
    assert get_backend_policy() == {"branch_free": True, "unroll": True, "host_loops": True,
                                    "network_precision": "float32", "steps_per_dispatch": 1,
                                    "remat_features": False, "donate_state": False}
    with backend_context(branch_free=False, host_loops=False, steps_per_dispatch=20):
        assert get_backend_policy() == {"branch_free": False, "unroll": True,
                                        "host_loops": False, "network_precision": "float32",
                                        "steps_per_dispatch": 20, "remat_features": False,
                                        "donate_state": False}
        assert not _backend.branch_free() and not _backend.host_loops()
        with backend_context(host_loops="auto"):  # back to the automatic rule, inside
            assert _backend.host_loops() and not _backend.branch_free()
        assert not _backend.host_loops()
    assert get_backend_policy()["branch_free"] is True  # restored on exit
    with pytest.raises(ValueError, match="unknown_choice"):
        set_backend_policy(unknown_choice=True)
    with pytest.raises(ValueError, match="`unroll` must be"):
        with backend_context(unroll="yes"):
            pass  # pragma: no cover
    assert get_backend_policy()["unroll"] is True


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the expected values are the CPU's")
def test_network_precision_decision_takes_its_values():
    assert _backend.network_precision() == "float32"  # the CPU's automatic value
    with backend_context(network_precision="tf32"):  # the accelerators' automatic value
        assert _backend.network_precision() == "tf32"
    assert _backend.network_precision() == "float32"
    with pytest.raises(ValueError, match="`network_precision` must be 'auto' or one of"):
        set_backend_policy(network_precision="float16")
    with pytest.raises(ValueError, match="`network_precision` must be"):
        set_backend_policy(network_precision=True)


def test_steps_per_dispatch_is_auto_or_a_positive_integer():
    import numpy as np

    with backend_context(steps_per_dispatch=np.int64(3)):
        assert _backend.steps_per_dispatch() == 3
    with backend_context(steps_per_dispatch="auto"):
        assert _backend.steps_per_dispatch() == (1 if jax.default_backend() == "cpu" else 20)
    for bad in (0, -2, 2.5, True, "many", None):
        with pytest.raises(ValueError, match="`steps_per_dispatch` must be 'auto' or an integer"):
            set_backend_policy(steps_per_dispatch=bad)
    with pytest.raises(ValueError, match="`host_loops` must be 'auto', True or False"):
        set_backend_policy(host_loops=4)
