import numpy as np
import pytest
from sklearn.utils import Bunch

from _dataset_server import (CIFAR10_CLASSES, TINY_WNIDS, DatasetServer, make_cifar10,
                             make_cifar100, make_idx, make_svhn, make_tiny_imagenet, sha256)
from sklearn_distill.datasets import SOURCES, get_data_home, load_benchmark, load_digits_images


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
    assert set(data) == {"X_train", "y_train", "X_test", "y_test", "classes", "DESCR"}
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
    with pytest.raises(ValueError, match="mnist.*fashion_mnist.*cifar10.*cifar100.*svhn.*tiny"):
        load_benchmark("imagenet", data_home=tmp_path)
    with pytest.raises(ValueError, match="extra=True applies to 'svhn' only"):
        load_benchmark("mnist", data_home=tmp_path, extra=True)


def test_missing_file_without_download_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_benchmark("mnist", data_home=tmp_path / "nowhere", download=False)
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message and "download=True" in message
    assert "storage.googleapis.com" in message and "SKLEARN_DISTILL_DATA" in message
    assert not (tmp_path / "nowhere" / "mnist.npz").exists()


def test_malformed_file(tmp_path):
    np.savez(tmp_path / "mnist.npz", X_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="y_train"):
        load_benchmark("mnist", data_home=tmp_path)


def test_every_official_file_has_a_checksum():
    for name, source in SOURCES.items():
        assert source.files and source.url.startswith("http")
        for fname, known in source.files.items():
            algorithm, digest = known.split(":")
            # SHA-256 everywhere except Tiny ImageNet, for which only an MD5 is published.
            assert (algorithm, len(digest)) == (("md5", 32) if name == "tiny_imagenet"
                                                else ("sha256", 64)), fname
        assert source.licence and source.citation and source.size


# --------------------------------------------------------------------------------------------
# Fetching from a local server that serves tiny archives in the official formats
# --------------------------------------------------------------------------------------------

def _serve(monkeypatch, name, files, lifetime=60.0):
    """Patch the checksum table for ``files`` and return a server holding them."""
    monkeypatch.setitem(SOURCES, name, SOURCES[name]._replace(
        files={f: sha256(data) for f, data in files.items()}))
    return DatasetServer({f"/{name}/{f}": data for f, data in files.items()}, lifetime=lifetime)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_download_parse_and_cache(tmp_path, monkeypatch, name):
    files, expected = make_idx()
    with _serve(monkeypatch, name, files) as server:
        monkeypatch.setenv("SKLEARN_DISTILL_MIRROR", server.url)
        data = load_benchmark(name, data_home=tmp_path, progress=False)
        assert server.count(f"/{name}/") == 4
        np.testing.assert_array_equal(data.X_train[..., 0], expected["X_train"])
        np.testing.assert_array_equal(data.y_train, expected["y_train"])
        np.testing.assert_array_equal(data.X_test[..., 0], expected["X_test"])
        np.testing.assert_array_equal(data.y_test, expected["y_test"])
        assert data.X_train.shape == (5, 28, 28, 1) and data.X_train.dtype == np.uint8
        assert len(data.classes) == 10 and data.y_train.dtype == np.int64
        assert "Licence" in data.DESCR and "Citation" in data.DESCR
        # Cached: the original files and the decoded arrays; a second call downloads nothing.
        assert (tmp_path / f"{name}.npz").is_file()
        assert (tmp_path / name / "train-images-idx3-ubyte.gz").is_file()
        again = load_benchmark(name, data_home=tmp_path, progress=False)
        assert server.count(f"/{name}/") == 4
        np.testing.assert_array_equal(again.X_train, data.X_train)
    assert data.classes[0] == ("T-shirt/top" if name == "fashion_mnist" else "0")


def test_cifar10_binary_version(tmp_path, monkeypatch):
    files, expected = make_cifar10()
    with _serve(monkeypatch, "cifar10", files) as server:
        X_train, y_train, X_test, y_test = load_benchmark(
            "cifar10", data_home=tmp_path, base_url=server.url + "/cifar10", return_X_y=True,
            progress=False)
    # Records are CHW planes; the loader returns NHWC, batches 1..5 in order.
    np.testing.assert_array_equal(X_train, expected["X_train"])
    np.testing.assert_array_equal(y_train, expected["y_train"])
    np.testing.assert_array_equal(X_test, expected["X_test"])
    np.testing.assert_array_equal(y_test, expected["y_test"])
    data = load_benchmark("cifar10", data_home=tmp_path, download=False)
    assert data.classes.tolist() == CIFAR10_CLASSES and X_train.shape == (10, 32, 32, 3)


def test_cifar100_fine_and_coarse_labels(tmp_path, monkeypatch):
    files, expected = make_cifar100(n_train=6)
    with _serve(monkeypatch, "cifar100", files) as server:
        data = load_benchmark("cifar100", data_home=tmp_path, base_url=server.url + "/cifar100",
                              progress=False)
    for key in ("X_train", "y_train", "X_test", "y_test", "y_train_coarse", "y_test_coarse"):
        np.testing.assert_array_equal(data[key], expected[key])
    assert len(data.classes) == 100 and data.classes[5] == "fine5"
    assert len(data.coarse_classes) == 20 and data.coarse_classes[3] == "coarse3"


def test_svhn_mat_files_and_optional_extra_split(tmp_path, monkeypatch):
    files, expected = make_svhn()
    with _serve(monkeypatch, "svhn", files) as server:
        monkeypatch.setenv("SKLEARN_DISTILL_MIRROR", server.url + "/")
        data = load_benchmark("svhn", data_home=tmp_path, progress=False)
        assert server.count("extra") == 0 and "X_extra" not in data
        np.testing.assert_array_equal(data.X_train, expected["X_train"])
        # Label 10 in the file is the digit 0.
        np.testing.assert_array_equal(data.y_train, expected["y_train"])
        np.testing.assert_array_equal(data.y_test, expected["y_test"])
        data = load_benchmark("svhn", data_home=tmp_path, extra=True, progress=False)
        assert server.count("extra") == 1 and server.count("train_32x32") == 1
    np.testing.assert_array_equal(data.X_extra, expected["X_extra"])
    np.testing.assert_array_equal(data.y_extra, expected["y_extra"])
    assert (tmp_path / "svhn_extra.npz").is_file()


def test_tiny_imagenet_jpeg_folders(tmp_path, monkeypatch):
    files = make_tiny_imagenet(per_class=2)
    with _serve(monkeypatch, "tiny_imagenet", files) as server:
        data = load_benchmark("tiny_imagenet", data_home=tmp_path,
                              base_url=server.url + "/tiny_imagenet", progress=False)
    # Classes in sorted WordNet-id order, named from words.txt.
    assert data.wnids.tolist() == sorted(TINY_WNIDS)
    assert data.classes.tolist() == ["goldfish, Carassius auratus", "Egyptian cat", "thing"]
    assert data.X_train.shape == (6, 64, 64, 3) and data.X_train.dtype == np.uint8
    assert data.y_train.tolist() == [0, 0, 1, 1, 2, 2]
    # The validation split is the test split, labelled by val_annotations.txt.
    assert data.X_test.shape == (2, 64, 64, 3) and data.y_test.tolist() == [1, 2]
    assert np.abs(data.X_test.astype(int) - [0, 0, 250]).max() <= 3
    grey = data.X_train[1]  # the greyscale JPEG, as three equal channels
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert np.abs(data.X_train[0].astype(int) - [200, 0, 0]).max() <= 3


def test_checksum_failure_names_file_and_hash_then_downloads_anew(tmp_path, monkeypatch):
    files, _ = make_cifar10()
    fname = "cifar-10-binary.tar.gz"
    with _serve(monkeypatch, "cifar10", files) as server:
        wrong = "sha256:" + "0" * 64
        monkeypatch.setitem(SOURCES, "cifar10", SOURCES["cifar10"]._replace(files={fname: wrong}))
        with pytest.raises(ValueError) as info:
            load_benchmark("cifar10", data_home=tmp_path, base_url=server.url + "/cifar10",
                           progress=False)
        assert fname in str(info.value) and wrong in str(info.value)
        # Nothing half-checked stays behind under any name a later call would trust.
        assert sorted(p.name for p in (tmp_path / "cifar10").iterdir()) == []
        assert not (tmp_path / "cifar10.npz").exists()
        # With the right checksum the next call downloads the file again and succeeds.
        monkeypatch.setitem(SOURCES, "cifar10", SOURCES["cifar10"]._replace(
            files={fname: sha256(files[fname])}))
        load_benchmark("cifar10", data_home=tmp_path, base_url=server.url + "/cifar10",
                       progress=False)
        assert server.count(fname) == 2


def test_corrupted_cached_file_is_reported_and_downloaded_again(tmp_path, monkeypatch):
    files, expected = make_idx()
    with _serve(monkeypatch, "mnist", files) as server:
        monkeypatch.setenv("SKLEARN_DISTILL_MIRROR", server.url)
        folder = tmp_path / "mnist"
        folder.mkdir()
        cached = folder / "train-labels-idx1-ubyte.gz"
        cached.write_bytes(files[cached.name][:-3])  # a truncated copy from an earlier run
        with pytest.raises(ValueError) as info:
            load_benchmark("mnist", data_home=tmp_path, progress=False)
        assert str(cached) in str(info.value)
        assert SOURCES["mnist"].files[cached.name] in str(info.value)
        assert not cached.exists()
        data = load_benchmark("mnist", data_home=tmp_path, progress=False)
        assert server.count(cached.name) == 1
    np.testing.assert_array_equal(data.y_train, expected["y_train"])


def test_interrupted_download_resumes_where_it_stopped(tmp_path, monkeypatch):
    files, expected = make_cifar10(per_batch=40)
    fname = "cifar-10-binary.tar.gz"
    size = len(files[fname])
    with _serve(monkeypatch, "cifar10", files) as server:
        server.truncate.add(f"/cifar10/{fname}")
        url = server.url + "/cifar10"
        with pytest.raises(OSError, match="resume") as info:
            load_benchmark("cifar10", data_home=tmp_path, base_url=url, progress=False)
        part = tmp_path / "cifar10" / (fname + ".part")
        assert str(part) in str(info.value)
        # The bytes received are kept under a name no call trusts as the file itself.
        received = part.stat().st_size
        assert 0 < received <= size // 2
        assert not (tmp_path / "cifar10" / fname).exists()
        data = load_benchmark("cifar10", data_home=tmp_path, base_url=url, progress=False)
        # The second call asks only for the rest.
        assert server.requests[-1] == (f"/cifar10/{fname}", f"bytes={received}-")
    assert not part.exists()
    np.testing.assert_array_equal(data.X_train, expected["X_train"])
    np.testing.assert_array_equal(data.y_test, expected["y_test"])
