import json
import subprocess
import sys

import pytest

from sklearn_distill import load_synthetic_set
from sklearn_distill.cli import main


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


def test_coreset_method(tmp_path, capsys):
    assert main(["--method", "herding", "--ipc", "1", "--width", "8", "--eval-models", "1",
                 "--eval-steps", "30", "--no-full", "--out", str(tmp_path), "--quiet"]) == 0
    assert "distilled (herding)" in capsys.readouterr().out
    assert load_synthetic_set(tmp_path / "digits_herding_ipc1.npz").soft_labels is None


def test_missing_benchmark_files_are_explained(tmp_path, capsys):
    assert main(["--dataset", "mnist", "--data-home", str(tmp_path), "--quiet"]) == 2
    assert "materialize" in capsys.readouterr().err


def test_bad_arguments(capsys):
    assert main(["--ipc", "0", "--method", "herding"]) == 2
    assert main(["--ipc", "500", "--method", "random", "--quiet"]) == 2
    assert "ipc" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--method", "magic"])


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "sklearn_distill", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "--dataset" in out and "--ipc" in out
