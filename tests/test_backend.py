"""Tests for the backend policy (sklearn_distill._backend)."""

import jax
import pytest

from sklearn_distill import _backend
from sklearn_distill._backend import backend_context, get_backend_policy, set_backend_policy


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the expected values are the CPU's")
def test_policy_is_resolved_from_the_backend_and_scoped():
    assert get_backend_policy() == {"branch_free": True, "unroll": True, "host_loops": True,
                                    "remat_features": False}
    with backend_context(branch_free=False, host_loops=False):
        assert get_backend_policy() == {"branch_free": False, "unroll": True,
                                        "host_loops": False, "remat_features": False}
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
