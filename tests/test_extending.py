"""The one-file method of the architecture page works as a distiller (docs/extending)."""

import importlib.util
import pathlib

import numpy as np
import pytest

from sklearn_distill import BoostedDistiller, ConvNet, load_digits_images

EXAMPLE = pathlib.Path(__file__).parent.parent / "docs" / "extending" / "distribution_matching.py"


@pytest.fixture(scope="module")
def dm():
    spec = importlib.util.spec_from_file_location("distribution_matching", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DistributionMatchingDistiller


def test_one_file_method_fits_checkpoints_and_boosts(dm, tmp_path):
    X, y = load_digits_images(return_X_y=True)
    X, y = X[:200], y[:200]
    tiny = dict(ipc=1, n_steps=4, batch_size=64, model=ConvNet(width=8, depth=2), log_every=2,
                n_eval_models=1, eval_steps=10, random_state=0)
    fitted = dm(**tiny).fit(X, y)
    assert fitted.synthetic_X_.shape == (10, 8, 8, 1) and fitted.n_iter_ == 4
    assert fitted.history_["step"] == [2, 4] and fitted.stop_reason_ == "done"
    assert 0.0 <= fitted.score(X[:50], y[:50]) <= 1.0
    # Checkpoints come from the template: a finished run's checkpoint is resumed, not recomputed.
    path = str(tmp_path / "dm.ckpt")
    writer = dm(**tiny, checkpoint=path, checkpoint_every=2).fit(X, y)
    resumed = dm(**tiny, checkpoint=path).fit(X, y)
    np.testing.assert_array_equal(resumed.synthetic_X_, fitted.synthetic_X_)
    assert resumed.history_["time"] == writer.history_["time"]  # restored, not re-run
    with pytest.raises(ValueError, match="momentum"):
        dm(**tiny, momentum=1.5).fit(X, y)
    # So does the warm start: Boost-DD with beta=0 leaves the first block as it was.
    boosted = BoostedDistiller(dm(**tiny), n_blocks=2, beta=0.0, random_state=0).fit(X, y)
    np.testing.assert_array_equal(boosted.synthetic_X_[:10], fitted.synthetic_X_)
