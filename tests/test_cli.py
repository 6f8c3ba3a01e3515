import inspect
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

import sklearn_distill
from _dataset_server import DatasetServer, make_cifar100, sha256
from sklearn_distill import (BaseDistiller, KRRDistiller, load_benchmark, load_digits_images,
                             load_synthetic_set)
from sklearn_distill.cli import (METHODS, REGISTRY, _Deadline, build_parser, main,
                                 resolve_settings)
from sklearn_distill.datasets import SOURCES


def test_main_job_end_to_end_on_digits(tmp_path, capsys):
    # The default method (FRePo) at tiny settings.
    status = main(["--ipc", "2", "--steps", "10", "--width", "8", "--eval-models", "2",
                   "--eval-steps", "60", "--full-steps", "60", "--out", str(tmp_path), "--quiet"])
    assert status == 0
    out = capsys.readouterr().out
    for row in ("distilled (frepo)", "random real subset", "full training data"):
        assert row in out
    s = load_synthetic_set(tmp_path / "digits_frepo_ipc2.npz")
    assert s.X.shape == (20, 8, 8, 1) and s.soft_labels.shape == (20, 10)
    assert s.metadata["method"] == "FRePoDistiller" and s.metadata["parameters"]["n_steps"] == 10
    assert s.metadata["dataset"] == "digits" and "ImageStandardizer" in s.metadata["preprocessing"]
    assert (tmp_path / "digits_frepo_ipc2.png").stat().st_size > 1000
    results = json.loads((tmp_path / "digits_frepo_ipc2.json").read_text())["results"]
    assert 0 <= results["distilled (frepo)"]["mean"] <= 1


def test_coreset_method_and_the_settings_header(tmp_path, capsys):
    assert main(["--method", "herding", "--ipc", "1", "--width", "8", "--eval-models", "1",
                 "--eval-steps", "30", "--no-full", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "distilled (herding)" in out
    # No accelerator here: the header says the CPU-sized settings were chosen.
    assert "CPU-sized settings (no accelerator)" in out
    assert load_synthetic_set(tmp_path / "digits_herding_ipc1.npz").soft_labels is None
    saved = json.loads((tmp_path / "digits_herding_ipc1.json").read_text())
    assert saved["settings"]["size"] == "cpu" and saved["settings"]["width"] == 8


def test_missing_benchmark_files_are_explained(tmp_path, capsys):
    assert main(["--dataset", "mnist", "--data-home", str(tmp_path), "--no-download",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "download=True" in err


def test_every_distiller_is_a_method_with_help():
    classes = {name: getattr(sklearn_distill, name) for name in sklearn_distill.__all__
               if inspect.isclass(getattr(sklearn_distill, name))
               and issubclass(getattr(sklearn_distill, name), BaseDistiller)}
    # Every public distiller, less the templates the others derive from (BaseDistiller, ...).
    public = {name for name, cls in classes.items()
              if not any(other is not cls and issubclass(other, cls) for other in classes.values())}
    assert {spec.estimator for spec in REGISTRY.values()} == public
    assert set(METHODS) == {"frepo", "rcig", "ratbptt", "boost", "krr", "translator", "herding",
                            "kcenter", "random"}
    text = build_parser().format_help()
    for spec in REGISTRY.values():
        assert spec.estimator in text and spec.summary.split(":")[0] in text


@pytest.mark.parametrize("method", METHODS)
def test_cpu_and_gpu_settings_build_each_method(method):
    X = load_digits_images().images
    for size, width in (("cpu", 32), ("gpu", 128)):
        args = build_parser().parse_args(["--method", method, "--ipc", "10", "--dataset",
                                          "cifar10"])
        s = resolve_settings(args, size, (32, 32, 3))
        assert s["width"] == width and s["depth"] == 3
        estimator = REGISTRY[method].build(s)
        assert type(estimator).__name__ == REGISTRY[method].estimator
        params = estimator.get_params()
        if REGISTRY[method].learned:
            steps = REGISTRY[method].defaults[size]["steps"][1]
            n_steps = params.get("n_steps", params.get("distiller__n_steps"))
            assert n_steps == steps
        model = params.get("eval_model", params.get("distiller__eval_model"))
        assert model.width == width
    # 64-pixel images get the deeper ConvNet; command-line values beat both sizes.
    args = build_parser().parse_args(["--method", method, "--width", "16", "--steps", "7"])
    s = resolve_settings(args, "gpu", (64, 64, 3))
    assert (s["width"], s["depth"], s["steps"]) == (16, 4, 7)
    assert X.shape[1:] == (8, 8, 1)


def test_boost_splits_ipc_into_blocks():
    args = build_parser().parse_args(["--method", "boost", "--ipc", "10"])
    boosted = REGISTRY["boost"].build(resolve_settings(args, "cpu", (8, 8, 1)))
    assert (boosted.n_blocks, boosted.block_ipc, boosted.distiller.ipc) == (5, 2, 2)


def test_time_budget_sizes_the_schedule(tmp_path, capsys):
    assert main(["--method", "krr", "--ipc", "1", "--time-budget", "8", "--width", "8",
                 "--eval-models", "1", "--eval-steps", "10", "--no-full", "--out",
                 str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "time budget 8 s" in out
    s = load_synthetic_set(tmp_path / "digits_krr_ipc1.npz")
    # The schedule was sized from the probe (not the 300-step default), and the fit kept to the
    # budget, or to the probe's time where compiling alone outlasted it (a loaded machine).
    settings = s.metadata["settings"]
    assert s.metadata["parameters"]["n_steps"] == settings["steps"] != 300
    assert 1 <= settings["steps_taken"] <= settings["steps"]
    assert s.metadata["distill_seconds"] < max(8, settings["probe_seconds"]) + 8
    assert main(["--method", "herding", "--time-budget", "5"]) == 2
    assert "--time-budget applies to" in capsys.readouterr().err


@pytest.mark.parametrize("seconds", [0, 8])
def test_deadline_stops_a_fit_gracefully(seconds):
    # 0: the deadline passes before the loop starts; the loop is still stopped once it does.
    X, y = load_digits_images(return_X_y=True)
    krr = KRRDistiller(ipc=1, n_steps=10 ** 6, n_networks=1, random_state=0,
                       model=sklearn_distill.ConvNet(width=8, depth=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with _Deadline(seconds) as deadline:
            krr.fit(X, y)
    assert deadline.fired and 0 < krr.n_iter_ < 10 ** 6
    assert np.isfinite(krr.synthetic_X_).all()


@pytest.mark.filterwarnings("ignore:The number of unique classes")
def test_cifar100_herding_from_a_cache_built_by_the_test_server(tmp_path, monkeypatch, capsys):
    # One image per class: 100 training images, so that ipc 1 works.
    files, _ = make_cifar100(n_train=100, n_test=4)
    monkeypatch.setitem(SOURCES, "cifar100", SOURCES["cifar100"]._replace(
        files={f: sha256(data) for f, data in files.items()}))
    with DatasetServer({f"/cifar100/{f}": d for f, d in files.items()}) as server:
        monkeypatch.setenv("SKLEARN_DISTILL_MIRROR", server.url)
        load_benchmark("cifar100", data_home=tmp_path / "data", progress=False)
        assert server.count("cifar") == 1
    monkeypatch.setenv("SKLEARN_DISTILL_DATA", str(tmp_path / "data"))
    # The server is gone: the command works from the cache alone.
    assert main(["--dataset", "cifar100", "--method", "herding", "--ipc", "1", "--width", "8",
                 "--eval-models", "1", "--eval-steps", "10", "--full-steps", "10", "--out",
                 str(tmp_path / "out"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "cifar100 (100 training / 4 test images of shape (32, 32, 3))" in out
    for row in ("distilled (herding)", "random real subset", "full training data"):
        assert row in out
    s = load_synthetic_set(tmp_path / "out" / "cifar100_herding_ipc1.npz")
    assert s.X.shape == (100, 32, 32, 3) and len(s.metadata["class_names"]) == 100
    assert s.metadata["class_names"][:2] == ["fine0", "fine1"]


def test_bad_arguments(capsys):
    assert main(["--ipc", "0", "--method", "herding"]) == 2
    assert main(["--ipc", "500", "--method", "random", "--quiet"]) == 2
    assert "ipc" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--method", "magic"])


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "sklearn_distill", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--dataset" in out and "--ipc" in out
