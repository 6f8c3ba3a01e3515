import json
import zipfile

import numpy as np
import pytest

from sklearn_distill import HerdingDistiller, load_digits_images, load_synthetic_set


def test_round_trip_with_metadata(tmp_path):
    X, y = load_digits_images(return_X_y=True)
    names = np.array(list("abcdefghij"))[y]
    d = HerdingDistiller(ipc=2).fit(X, names)
    path = d.save(tmp_path / "set", metadata={"preprocessing": "none"})
    assert path.endswith(".npz")
    s = load_synthetic_set(path)
    np.testing.assert_array_equal(s.X, d.synthetic_X_)
    np.testing.assert_array_equal(s.y, d.synthetic_y_)
    np.testing.assert_array_equal(s.classes, d.classes_)
    assert s.soft_labels is None
    assert s.metadata["method"] == "HerdingDistiller"
    assert s.metadata["parameters"]["ipc"] == 2
    assert s.metadata["preprocessing"] == "none"
    assert s.metadata["layout"]["sample_shape"] == [8, 8, 1]
    assert "library_version" in s.metadata


def test_files_contain_no_pickled_objects(tmp_path):
    X, y = load_digits_images(return_X_y=True)
    path = HerdingDistiller(ipc=1).fit(X, y).save(tmp_path / "s.npz")
    with np.load(path, allow_pickle=False) as data:  # would raise on any object array
        assert all(data[k].dtype != object for k in data.files)
        json.loads(str(data["metadata"]))


def test_a_pickled_payload_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, X=np.zeros((1, 2)), y=np.array([0]), classes=np.array([0]),
             metadata=np.array([{"code": "x"}], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        load_synthetic_set(path)


def test_not_a_synthetic_set(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        load_synthetic_set(tmp_path / "other.npz")
    with zipfile.ZipFile(tmp_path / "other.npz") as zf:
        assert zf.namelist() == ["a.npy"]


def test_one_container_for_every_file(tmp_path):
    from sklearn_distill.io import load_container, save_container

    path = save_container(tmp_path / "c.npz", {"a": np.arange(3)}, {"format": "demo/1", "n": 3})
    arrays, meta = load_container(path, format="demo/1")
    assert meta == {"format": "demo/1", "n": 3} and arrays["a"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="has format 'demo/1', expected 'other/1'"):
        load_container(path, format="other/1")
    with pytest.raises(ValueError, match="reserved"):
        save_container(tmp_path / "d.npz", {"__meta__": np.zeros(1)}, {})
    # Files of earlier versions stored the document as UTF-8 bytes; they still read.
    np.savez(tmp_path / "old.npz", a=np.ones(2),
             __meta__=np.frombuffer(json.dumps({"format": "demo/1"}).encode(), np.uint8))
    assert load_container(tmp_path / "old.npz", format="demo/1")[1] == {"format": "demo/1"}
    np.savez(tmp_path / "plain.npz", a=np.ones(2))
    with pytest.raises(ValueError, match="is not a sklearn_distill file"):
        load_container(tmp_path / "plain.npz")
