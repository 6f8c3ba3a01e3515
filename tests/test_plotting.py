import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sklearn_distill.plotting import (  # noqa: E402
    plot_label_heatmap, plot_learning_curve, plot_synthetic_images)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _n_images(fig):
    return sum(len(ax.images) for ax in fig.axes)


@pytest.mark.parametrize("shape", [(7, 6, 6), (7, 6, 6, 1), (7, 6, 6, 3)])
def test_grid_one_row_per_class(shape, tmp_path):
    X = np.random.default_rng(0).normal(size=shape)
    y = np.array([0, 0, 0, 1, 2, 2, 1])
    fig = plot_synthetic_images(X, y, title="synthetic")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * 3  # 3 classes, at most 3 images of a class
    assert _n_images(fig) == 7
    shown = fig.axes[0].images[0].get_array()
    assert shown.min() == 0.0 and shown.max() == 1.0  # min-max rescaled
    fig.savefig(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_rows_with_and_without_image_shape():
    X = np.random.default_rng(1).uniform(size=(4, 12))
    fig = plot_synthetic_images(X, [0, 1, 0, 1], image_shape=(3, 4))
    assert fig.axes[0].images[0].get_array().shape == (3, 4)
    fig = plot_synthetic_images(np.ones((2, 16)), [0, 1])  # square grey rows inferred
    assert fig.axes[0].images[0].get_array().shape == (4, 4)
    fig = plot_synthetic_images(np.zeros((2, 48)), [0, 1])  # square RGB rows inferred
    assert fig.axes[0].images[0].get_array().shape == (4, 4, 3)


def test_max_per_class_classes_and_soft_labels():
    X = np.random.default_rng(2).normal(size=(12, 5, 5, 3))
    y = np.repeat(["cat", "dog", "frog"], 4)
    fig = plot_synthetic_images(X, y, classes=["frog", "cat"], max_per_class=2)
    assert len(fig.axes) == 4 and _n_images(fig) == 4
    assert fig.axes[0].get_ylabel() == "frog"
    # Integer labels with class names as classes.
    fig = plot_synthetic_images(X, np.repeat([0, 1, 2], 4), classes=["a", "b", "c"])
    assert [fig.axes[4 * r].get_ylabel() for r in range(3)] == ["a", "b", "c"]
    soft = np.eye(3)[np.repeat([0, 1, 2], 4)]
    assert _n_images(plot_synthetic_images(X, soft)) == 12


def test_draws_into_given_figure():
    fig = Figure()
    out = plot_synthetic_images(np.zeros((2, 4, 4)), [0, 1], fig=fig)
    assert out is fig and len(fig.axes) == 2


@pytest.mark.parametrize("X, y, kwargs, match", [
    (np.zeros((3, 4, 4, 2)), [0, 1, 2], {}, "shape"),
    (np.zeros((3, 5)), [0, 1, 2], {"image_shape": None}, "image_shape"),
    (np.zeros((3, 12)), [0, 1, 2], {"image_shape": (3, 3)}, "image_shape"),
    (np.zeros(5), [0], {}, "shape"),
    (np.zeros((3, 4, 4)), [0, 1], {}, "one label per image"),
    (np.zeros((3, 4, 4)), [0, 1, 2], {"max_per_class": 0}, "max_per_class"),
    (np.zeros((3, 4, 4)), [0, 1, 5], {"classes": ["a", "b"]}, "classes"),
    (np.zeros((3, 4, 4)), [0, 1, 1], {"classes": [7, 8]}, "classes"),
])
def test_synthetic_images_bad_input(X, y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_synthetic_images(X, y, **kwargs)


def test_label_heatmap(tmp_path):
    labels = np.random.default_rng(3).normal(size=(20, 4))
    fig = plot_label_heatmap(labels, classes=list("abcd"), title="labels")
    assert len(fig.axes) == 2  # heatmap + colour bar
    assert fig.axes[0].images[0].get_array().shape == (20, 4)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list("abcd")
    fig.savefig(tmp_path / "labels.png")
    assert (tmp_path / "labels.png").exists()
    fig, ax = plt.subplots()
    assert plot_label_heatmap(labels, ax=ax) is fig


@pytest.mark.parametrize("labels, classes, match", [
    (np.zeros(5), None, "2-D"),
    (np.zeros((2, 3, 4)), None, "2-D"),
    (np.zeros((5, 3)), ["a", "b"], "classes"),
])
def test_label_heatmap_bad_input(labels, classes, match):
    with pytest.raises(ValueError, match=match):
        plot_label_heatmap(labels, classes)


def test_learning_curve(tmp_path):
    history = {"step": [0, 1, 2, 3], "time": [0.0, 0.5, 1.0, 1.4], "loss": [3.0, 2.0, 1.5, 1.2],
               "val_accuracy": [None, 0.4, float("nan"), 0.7]}
    fig = plot_learning_curve(history)
    assert len(fig.axes) == 1 and fig.axes[0].get_xlabel() == "step"
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), history["loss"])
    fig = plot_learning_curve(history, x="time", y=["loss", "val_accuracy"], title="run")
    assert len(fig.axes) == 2
    np.testing.assert_array_equal(fig.axes[1].lines[0].get_ydata(), [0.4, 0.7])
    fig.savefig(tmp_path / "curve.png")
    assert (tmp_path / "curve.png").exists()


def test_learning_curve_accepts_dataframe():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"step": [0, 1], "loss": [1.0, 0.5]})
    assert len(plot_learning_curve(df).axes) == 1


@pytest.mark.parametrize("history, kwargs, match", [
    ({"step": [0, 1], "loss": [1.0]}, {}, "equal lengths"),
    ({"step": [0, 1], "loss": [1.0, 2.0]}, {"y": "accuracy"}, "accuracy"),
    ({"loss": [1.0, 2.0]}, {}, "step"),
    ({"step": [0, 1], "loss": ["a", "b"]}, {}, "numbers"),
    ([1, 2, 3], {}, "dict"),
])
def test_learning_curve_bad_input(history, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_learning_curve(history, **kwargs)
