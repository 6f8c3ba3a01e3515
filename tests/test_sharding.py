"""Data parallelism: every learned distiller fitted on 8 simulated CPU devices matches one device.

XLA's device count is fixed when JAX starts, so the 8-device fits run in a child process started
with ``--xla_force_host_platform_device_count=8``; it fits each distiller twice (``devices=None``
and ``devices=8``, same seed) and prints the largest differences, which the test checks.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from sklearn_distill import FRePoDistiller, KRRDistiller, RaTBPTTDistiller, RCIGDistiller
from sklearn_distill import TranslatorDistiller, load_digits_images
from sklearn_distill._sharding import DataParallel, data_parallel, resolve_devices

_FITS = textwrap.dedent("""
    import json, os
    import jax, numpy as np
    from sklearn_distill import (ConvNet, FRePoDistiller, KRRDistiller, RaTBPTTDistiller,
                                 RCIGDistiller, Translator, TranslatorCache, TranslatorDistiller,
                                 load_digits_images, pretrain_translator)
    assert len(jax.devices()) == 8, jax.devices()
    X, y = load_digits_images(return_X_y=True)
    X, y = X[:480], y[:480]
    net = ConvNet(width=8, depth=2)
    common = dict(ipc=1, model=net, random_state=0, log_every=1)
    makers = {
        "FRePo": lambda d: FRePoDistiller(n_steps=3, batch_size=128, pool_size=2,
                                          max_online_steps=2, devices=d, **common),
        "RCIG": lambda d: RCIGDistiller(n_steps=2, batch_size=128, pool_size=2, n_inner=2,
                                        n_hinv=2, max_online_steps=2, online_steps=1,
                                        inner_learning_rate=1e-3, hinv_learning_rate=1e-3,
                                        devices=d, **common),
        "RaT-BPTT": lambda d: RaTBPTTDistiller(n_steps=3, window=2, unroll=3, batch_size=128,
                                               real_chunk_size=64, devices=d, **common),
        "KRR": lambda d: KRRDistiller(n_steps=4, n_networks=2, batch_size=128, devices=d,
                                      **common),
        "Translator": lambda d: TranslatorDistiller(
            translator=Translator(width=4, depth=1), n_steps=3, batch_size=128, adapt_steps=2,
            devices=d, **common),
    }
    out = {}
    for name, make in makers.items():
        one, eight = make(None).fit(X, y), make(8).fit(X, y)
        assert isinstance(eight.synthetic_X_, np.ndarray) and eight.n_iter_ == one.n_iter_
        out[name] = {"max_abs_diff": float(np.max(np.abs(one.synthetic_X_ - eight.synthetic_X_))),
                     "finite": bool(np.all(np.isfinite(eight.synthetic_X_)))}
        if one.synthetic_y_soft_ is not None:
            out[name]["max_abs_label_diff"] = float(
                np.max(np.abs(one.synthetic_y_soft_ - eight.synthetic_y_soft_)))
    # Pre-training a translator with each sub-task's real rows split over the devices.
    cache = TranslatorCache(os.environ["SHARD_CACHE"], n_real=96, n_steps=2, max_images=20,
                            model=net, random_state=0)
    cache.extend(X, y, n_tasks=2)
    pre = [pretrain_translator(cache, X, y, translator=Translator(width=4, depth=1), n_steps=2,
                               tasks_per_step=1, n_eval=0, devices=d) for d in (None, 8)]
    # Compared as functions: with the moment anchor a one-channel translator's output bias is
    # a constant shift that the anchor removes, so its gradient is rounding noise that Adam
    # scales up to whole steps, differently on each path, without changing any output.
    out["pretrain_translator"] = {"max_abs_diff": float(
        np.max(np.abs(pre[0].translate(X[:64]) - pre[1].translate(X[:64]))))}
    print("RESULT " + json.dumps(out))
""")


@pytest.fixture(scope="module")
def eight_device_fits(tmp_path_factory):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu", "SHARD_CACHE": str(tmp_path_factory.mktemp("cache"))}
    proc = subprocess.run([sys.executable, "-c", _FITS], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


# A tenth of one optimiser step of each fit (its learning rate): float32 sums taken in another
# order give differences far below it, while a sharding error (a lost or doubled part of the
# batch) moves the set by whole steps.
_TOLERANCE = {"FRePo": 3e-5, "RCIG": 1e-4, "RaT-BPTT": 1e-4, "KRR": 1e-3, "Translator": 1e-3,
              "pretrain_translator": 1e-4}


@pytest.mark.parametrize("name", sorted(_TOLERANCE))
def test_sharded_fit_matches_single_device(eight_device_fits, name):
    res = eight_device_fits[name]
    assert res.get("finite", True)
    assert res["max_abs_diff"] < _TOLERANCE[name], res
    if "max_abs_label_diff" in res:
        assert res["max_abs_label_diff"] < _TOLERANCE[name], res


def test_resolve_devices_errors():
    n = len(jax.devices())
    assert resolve_devices(None) is None
    assert resolve_devices(1) == jax.devices()[:1]
    assert resolve_devices(list(jax.devices())) == list(jax.devices())
    with pytest.raises(ValueError, match="devices"):
        resolve_devices(n + 1)
    with pytest.raises(ValueError, match="devices"):
        resolve_devices([])
    with pytest.raises(ValueError, match="more than once"):
        resolve_devices([jax.devices()[0]] * 2)
    with pytest.raises(ValueError, match="devices"):
        resolve_devices(["cpu:0"])


def test_single_device_placement_is_a_noop():
    placement = data_parallel(None)
    assert placement == DataParallel(None, None) and placement.n_devices == 1
    x = np.ones((6, 2), np.float32)
    assert placement.rows(x) is x
    assert placement.batch_size(100, 6) == 6
    assert data_parallel(1).replicated == jax.devices()[0]


@pytest.mark.parametrize("cls", [FRePoDistiller, RCIGDistiller, RaTBPTTDistiller, KRRDistiller,
                                 TranslatorDistiller])
def test_every_learned_distiller_takes_devices(cls):
    X, y = load_digits_images(return_X_y=True)
    with pytest.raises(ValueError, match="devices"):
        cls(ipc=1, devices=len(jax.devices()) + 1, n_steps=1).fit(X[:100], y[:100])
    with pytest.raises(ValueError, match="devices"):
        cls(ipc=1, devices="gpu", n_steps=1).fit(X[:100], y[:100])
