import numpy as np
import pytest
from sklearn.utils import Bunch

from sklearn_distill.datasets import get_data_home, load_benchmark, load_digits_images


def _write_fake(folder, name, shape):
    rng = np.random.default_rng(0)
    classes = np.array(list("0123456789")) if name == "mnist" else np.array(
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"])
    np.savez(folder / f"{name}.npz",
             X_train=rng.integers(0, 256, (6,) + shape, dtype=np.uint8),
             y_train=np.arange(6, dtype=np.int64) % 10,
             X_test=rng.integers(0, 256, (3,) + shape, dtype=np.uint8),
             y_test=np.arange(3, dtype=np.int64),
             classes=classes)


def test_digits_bunch_and_tuple():
    data = load_digits_images()
    assert isinstance(data, Bunch)
    assert data.images.shape == (1797, 8, 8, 1)
    assert data.images.dtype == np.float32
    assert data.images.min() == 0.0 and data.images.max() == 1.0
    assert data.target.shape == (1797,)
    assert list(data.target_names) == list(range(10))
    assert "digits" in data.DESCR
    X, y = load_digits_images(return_X_y=True)
    np.testing.assert_array_equal(X, data.images)
    np.testing.assert_array_equal(y, data.target)


def test_mnist_gets_a_channel_axis(tmp_path):
    _write_fake(tmp_path, "mnist", (28, 28))
    data = load_benchmark("mnist", data_home=tmp_path)
    assert set(data) == {"X_train", "y_train", "X_test", "y_test", "classes"}
    assert data.X_train.shape == (6, 28, 28, 1) and data.X_train.dtype == np.uint8
    assert data.X_test.shape == (3, 28, 28, 1)
    assert data.classes.tolist() == list("0123456789")


def test_cifar_tuple_and_env_variable(tmp_path, monkeypatch):
    _write_fake(tmp_path, "cifar10", (32, 32, 3))
    monkeypatch.setenv("SKLEARN_DISTILL_DATA", str(tmp_path))
    X_train, y_train, X_test, y_test = load_benchmark("CIFAR10", return_X_y=True)
    assert X_train.shape == (6, 32, 32, 3) and X_train.dtype == np.uint8
    assert y_train.shape == (6,) and X_test.shape == (3, 32, 32, 3) and y_test.shape == (3,)


def test_default_data_home(monkeypatch, tmp_path):
    monkeypatch.delenv("SKLEARN_DISTILL_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert get_data_home() == tmp_path / "sklearn_distill_data"
    monkeypatch.setenv("SKLEARN_DISTILL_DATA", "/somewhere")
    assert str(get_data_home()) == "/somewhere"


def test_unknown_name_lists_valid_names(tmp_path):
    with pytest.raises(ValueError, match="mnist.*cifar10"):
        load_benchmark("imagenet", data_home=tmp_path)


def test_missing_file_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_benchmark("mnist", data_home=tmp_path / "nowhere")
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message
    assert "materialize.py" in message and "SKLEARN_DISTILL_DATA" in message


def test_malformed_file(tmp_path):
    np.savez(tmp_path / "mnist.npz", X_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="y_train"):
        load_benchmark("mnist", data_home=tmp_path)
