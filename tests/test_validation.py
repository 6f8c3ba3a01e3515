import numpy as np
import pytest
from sklearn.base import BaseEstimator

from sklearn_distill._validation import (check_image_shape, check_ipc, check_random_key, check_target,
                                         encode_labels, random_seed, validate_input,
                                         validate_training_data)


class _Dummy(BaseEstimator):
    pass


def test_layouts_round_trip():
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 5)
    for X, image_shape, kind, internal in [
        (rng.normal(size=(10, 6)), None, "tabular", (10, 6)),
        (rng.normal(size=(10, 12)), (2, 2, 3), "rows", (10, 2, 2, 3)),
        (rng.normal(size=(10, 4, 4)), None, "images", (10, 4, 4, 1)),
        (rng.normal(size=(10, 4, 4, 3)), None, "images", (10, 4, 4, 3)),
    ]:
        Xi, y_enc, classes, layout = validate_training_data(_Dummy(), X, y, image_shape)
        assert layout.kind == kind and Xi.shape == internal and Xi.dtype == np.float32
        np.testing.assert_allclose(layout.to_input(Xi), X, rtol=1e-6)


def test_any_hashable_labels():
    X = np.zeros((4, 2))
    _, y_enc, classes, _ = validate_training_data(_Dummy(), X, ["b", "a", "b", "c"])
    assert list(classes) == ["a", "b", "c"] and list(y_enc) == [1, 0, 1, 2]


@pytest.mark.parametrize("X, y, image_shape, match", [
    (np.array([[0.0, np.nan], [1.0, 2.0]]), [0, 1], None, "NaN"),
    (np.array([[0.0, np.inf], [1.0, 2.0]]), [0, 1], None, "infinity"),
    (np.zeros((3, 2)), [1, 1, 1], None, "single class"),
    (np.zeros((4, 12)), [0, 1, 0, 1], (3, 3, 1), "image_shape"),
    (np.zeros((4, 12)), [0, 1, 0, 1], (3, -4), "image_shape"),
    (np.zeros((4, 4, 4)), [0, 1, 0, 1], (5, 5, 1), "image_shape"),
    (np.zeros((0, 3)), [], None, "0 sample"),
    (np.zeros((4, 2, 2, 2, 2)), [0, 1, 0, 1], None, "dimensions"),
    (np.zeros((4, 2)), [0.5, 1.5, 2.5, 3.7], None, "Unknown label type"),
])
def test_bad_input_names_the_problem(X, y, image_shape, match):
    with pytest.raises(ValueError, match=match):
        validate_training_data(_Dummy(), X, np.asarray(y), image_shape)


def test_ipc_larger_than_a_class():
    classes, y_enc = encode_labels(np.array(["a", "a", "b"]))
    check_ipc(y_enc, 1, classes)
    with pytest.raises(ValueError, match=r"`ipc`=2 .*'b': 1"):
        check_ipc(y_enc, 2, classes)


def test_validate_input_checks_shape():
    est = _Dummy()
    _, _, _, layout = validate_training_data(est, np.zeros((4, 3, 3)), [0, 1, 0, 1])
    assert validate_input(est, np.ones((2, 3, 3)), layout).shape == (2, 3, 3, 1)
    with pytest.raises(ValueError, match="features"):
        validate_input(est, np.ones((2, 4, 4)), layout)
    with pytest.raises(ValueError, match="features|shape"):
        validate_input(est, np.ones((2, 3, 3, 2)), layout)


def test_random_state_to_key_without_global_rng():
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    assert random_seed(3) == 3
    assert random_seed(np.random.RandomState(1)) == random_seed(np.random.RandomState(1))
    random_seed(None)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # global RNG untouched
    k1, k2 = check_random_key(5), check_random_key(5)
    np.testing.assert_array_equal(np.asarray(k1), np.asarray(k2))


def test_check_image_shape():
    assert check_image_shape((8, 8)) == (8, 8, 1)
    assert check_image_shape([2, 2, 3], 12) == (2, 2, 3)
    assert check_image_shape(None) is None
    with pytest.raises(ValueError, match="image_shape"):
        check_image_shape("abc")


def test_check_target_reads_one_hot_targets():
    labels, one_hot = check_target(np.array([[0, 1, 0], [0, 0, 1], [0, 1, 0]]))
    assert one_hot and list(labels) == [1, 2, 1]
    labels, one_hot = check_target(["a", "b"])
    assert not one_hot and labels == ["a", "b"]
    with pytest.raises(ValueError, match="row 1 holds 2 ones"):
        check_target(np.array([[0, 1, 0], [1, 1, 0], [0, 0, 1]]))
    with pytest.raises(ValueError, match="row 0 holds 0 ones"):
        check_target(np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1]]))


def test_sparse_rows_only_when_accepted():
    from scipy import sparse

    X = sparse.random(6, 4, density=0.5, format="csc", random_state=0)
    y = [0, 1, 0, 1, 0, 1]
    with pytest.raises(TypeError, match="[Ss]parse"):
        validate_training_data(_Dummy(), X, y)
    Xi, _, _, layout = validate_training_data(_Dummy(), X, y, accept_sparse=True)
    assert sparse.isspmatrix_csr(Xi) and Xi.dtype == np.float32 and layout.kind == "tabular"
    with pytest.raises(ValueError, match="image_shape"):
        validate_training_data(_Dummy(), X, y, image_shape=(2, 2, 1), accept_sparse=True)
