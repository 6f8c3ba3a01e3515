"""Figures for distilled datasets: image grids, learned-label heatmaps and learning curves.

Everything uses Matplotlib's object-oriented API and returns the :class:`~matplotlib.figure.Figure`,
so the functions work with any backend (including headless ``Agg``) and never touch the implicit
"current figure" state.
"""

import math
from collections.abc import Mapping

import numpy as np

from ._validation import check_channels_last

__all__ = ["plot_synthetic_images", "plot_label_heatmap", "plot_learning_curve"]


def _new_figure(figsize, layout=None):
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize, layout=layout)


def _as_images(X, image_shape):
    """Return ``X`` as (n, H, W) or (n, H, W, 3) float images for ``imshow``."""
    X = np.asarray(X)
    if X.dtype == object or not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"X must be a numeric array, got dtype {X.dtype}.")
    X = X.astype(np.float64)
    if X.ndim == 2:
        n, d = X.shape
        if image_shape is None:
            # Rows are unambiguous when square: d = s*s is grey, d = 3*s*s is RGB (never both).
            side = math.isqrt(d)
            rgb_side = math.isqrt(d // 3) if d % 3 == 0 else 0
            if side * side == d:
                image_shape = (side, side)
            elif rgb_side and 3 * rgb_side * rgb_side == d:
                image_shape = (rgb_side, rgb_side, 3)
            else:
                raise ValueError(f"X has {d} features per row, which is not a square grey or RGB "
                                 "image; pass image_shape=(H, W) or (H, W, C).")
        image_shape = tuple(int(s) for s in image_shape)
        if len(image_shape) not in (2, 3) or int(np.prod(image_shape)) != d:
            raise ValueError(f"image_shape={image_shape} does not match the {d} features per row "
                             "of X; expected (H, W) or (H, W, C) with H*W*C features.")
        X = X.reshape((n,) + image_shape)
    if X.ndim == 4 and image_shape is None:
        check_channels_last(X.shape)
    if X.ndim == 4 and X.shape[-1] == 1:
        X = X[..., 0]
    if X.ndim not in (3, 4) or (X.ndim == 4 and X.shape[-1] != 3):
        raise ValueError(f"X must be 2-D rows or images of shape (n, H, W), (n, H, W, 1) or "
                         f"(n, H, W, 3), got shape {X.shape}.")
    return X


def _minmax(image):
    """Rescale one image to [0, 1]; synthetic or whitened images have no fixed range."""
    low, high = np.nanmin(image), np.nanmax(image)
    if not np.isfinite(low) or not np.isfinite(high) or high <= low:
        return np.full_like(image, 0.5)
    return (image - low) / (high - low)


def plot_synthetic_images(X, y, classes=None, *, max_per_class=10, image_shape=None, fig=None,
                          title=None):
    """Show a distilled image set as a grid with one row per class.

    Parameters
    ----------
    X : array-like of shape (n, H, W), (n, H, W, 1), (n, H, W, 3) or (n, n_features)
        Images, or flattened rows (see ``image_shape``).
    y : array-like of shape (n,) or (n, n_classes)
        Labels; a 2-D (soft) label matrix is reduced to its arg-max column.
    classes : array-like, default=None
        Classes to show, one grid row each, in this order; images of other classes are left out.
        When ``y`` is integer and ``classes`` is not numeric, ``classes`` are names indexed by
        ``y`` (as the ``classes`` of :func:`~sklearn_distill.load_benchmark`). Defaults to the
        sorted unique values of ``y``.
    max_per_class : int, default=10
        Largest number of images shown per class (the first ones in ``X``).
    image_shape : tuple of int, default=None
        ``(H, W)`` or ``(H, W, C)`` of 2-D rows. When None, square grey (``H*W``) or RGB
        (``3*H*W``) rows are recognised.
    fig : matplotlib.figure.Figure, default=None
        Figure to draw into (it should be empty); a new one when None.
    title : str, default=None
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Each image is min-max rescaled to ``[0, 1]`` on its own, since synthetic and whitened images
    have no fixed intensity range.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(6, 8, 8, 3))
    >>> fig = plot_synthetic_images(X, [0, 0, 1, 1, 2, 2], classes=["cat", "dog", "frog"])
    >>> len(fig.axes)
    6
    """
    images = _as_images(X, image_shape)
    y = np.asarray(y)
    if y.ndim == 2:
        y = np.argmax(y, axis=1)
    if y.ndim != 1 or len(y) != len(images):
        raise ValueError(f"y must hold one label per image: X has {len(images)} images, y has "
                         f"shape {y.shape}.")
    if isinstance(max_per_class, bool) or not isinstance(max_per_class, (int, np.integer)) \
            or max_per_class < 1:
        raise ValueError(f"max_per_class must be a positive int, got {max_per_class!r}.")
    labels, names = _resolve_classes(y, classes)

    rows = [np.flatnonzero(y == label)[:max_per_class] for label in labels]
    n_cols = max([len(r) for r in rows] + [1])
    n_rows = max(len(labels), 1)
    if fig is None:
        width, height = 0.9 * n_cols + 0.8, 0.9 * n_rows + (0.5 if title else 0.1)
        fig = _new_figure((width, height))
        # Fixed margins (room for the row labels and title) and thin gaps between images.
        fig.subplots_adjust(left=0.7 / width, right=1 - 0.05 / width, bottom=0.05 / height,
                            top=1 - (0.45 if title else 0.05) / height, wspace=0.06, hspace=0.06)
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    for r, (index, name) in enumerate(zip(rows, names)):
        for c in range(n_cols):
            ax = axes[r, c]
            if c >= len(index):
                ax.set_axis_off()
                continue
            image = _minmax(images[index[c]])
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0,
                      interpolation="nearest")
            # Ticks and frame off but the axis kept, so that the row label stays visible.
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c == 0:
                ax.set_ylabel(str(name), rotation=0, ha="right", va="center")
    if not labels:
        axes[0, 0].set_axis_off()
    if title is not None:
        fig.suptitle(title)
    return fig


def _resolve_classes(y, classes):
    """Grid rows as (labels to select in ``y``, names to print)."""
    if classes is None:
        labels = np.unique(y).tolist()
        return labels, labels
    classes = np.asarray(classes).ravel()
    if np.issubdtype(y.dtype, np.integer) and not np.issubdtype(classes.dtype, np.number):
        # Integer labels with named classes: the labels index the names.
        if len(y) and (y.min() < 0 or y.max() >= len(classes)):
            raise ValueError(f"y holds integer labels in [{y.min()}, {y.max()}] but classes has "
                             f"only {len(classes)} names.")
        return list(range(len(classes))), classes.tolist()
    classes = classes.tolist()
    if len(y) and not np.isin(y, classes).any():
        raise ValueError(f"None of classes={classes!r} occurs in y (labels found: "
                         f"{np.unique(y).tolist()!r}).")
    return classes, classes


def plot_label_heatmap(soft_labels, classes=None, *, ax=None, title=None):
    """Heatmap of a learned label matrix, one row per synthetic sample.

    Parameters
    ----------
    soft_labels : array-like of shape (n_synthetic, n_classes)
        Learned labels, e.g. a distiller's ``synthetic_y_soft_``.
    classes : array-like of shape (n_classes,), default=None
        Column names; ``0 .. n_classes - 1`` when None.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw into; a new figure when None.
    title : str, default=None
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> fig = plot_label_heatmap(np.eye(3), classes=["a", "b", "c"])
    >>> len(fig.axes)  # the heatmap and its colour bar
    2
    """
    labels = np.asarray(soft_labels)
    if labels.ndim != 2 or labels.size == 0:
        raise ValueError("soft_labels must be a non-empty 2-D array (n_synthetic, n_classes), got "
                         f"shape {labels.shape}.")
    if not np.issubdtype(labels.dtype, np.number):
        raise ValueError(f"soft_labels must be numeric, got dtype {labels.dtype}.")
    n, k = labels.shape
    if classes is not None:
        classes = [str(c) for c in np.asarray(classes).ravel()]
        if len(classes) != k:
            raise ValueError(f"classes has {len(classes)} entries but soft_labels has {k} "
                             "columns.")
    if ax is None:
        fig = _new_figure((min(2.0 + 0.5 * k, 12.0), min(1.5 + 0.25 * n, 12.0)),
                          layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    image = ax.imshow(labels, aspect="auto", interpolation="nearest", cmap="viridis")
    fig.colorbar(image, ax=ax, label="label value")
    ax.set_xlabel("class")
    ax.set_ylabel("synthetic sample")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if k <= 50:
        ax.set_xticks(range(k))
        ax.set_xticklabels(classes if classes is not None else [str(i) for i in range(k)],
                           rotation=90 if classes is not None else 0)
    if title is not None:
        ax.set_title(title)
    return fig


def plot_learning_curve(history, x="step", y="loss", *, fig=None, title=None):
    """Plot logged quantities of a distillation run against steps or wall time.

    Parameters
    ----------
    history : dict of str to list, or pandas.DataFrame
        Equal-length sequences, e.g. a distiller's ``history_`` with keys ``"step"``, ``"time"``,
        ``"loss"`` and optionally ``"val_accuracy"``. Missing values (None or NaN) are skipped.
    x : str, default="step"
        Key of the horizontal axis, usually ``"step"`` or ``"time"``.
    y : str or list of str, default="loss"
        Key(s) to plot; each gets its own panel, stacked with a shared horizontal axis.
    fig : matplotlib.figure.Figure, default=None
        Figure to draw into; a new one when None.
    title : str, default=None
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> history = {"step": [0, 10, 20], "time": [0.0, 1.2, 2.5], "loss": [2.3, 1.1, 0.7],
    ...            "val_accuracy": [None, 0.6, 0.8]}
    >>> fig = plot_learning_curve(history, x="time", y=["loss", "val_accuracy"])
    >>> len(fig.axes)
    2
    """
    if not isinstance(history, Mapping) and not hasattr(history, "columns"):
        raise ValueError("history must be a dict of equal-length lists (or a DataFrame), got "
                         f"{type(history).__name__}.")
    keys = [str(k) for k in history.keys()]
    ys = [y] if isinstance(y, str) else list(y)
    if not ys:
        raise ValueError("y must name at least one key of history.")
    for key in [x] + ys:
        if key not in keys:
            raise ValueError(f"history has no key {key!r}; available keys: {keys}.")
    columns = {}
    for key in [x] + ys:
        values = np.asarray([np.nan if v is None else v for v in history[key]], dtype=object)
        if values.ndim != 1:
            raise ValueError(f"history[{key!r}] must be a flat sequence of numbers.")
        try:
            columns[key] = values.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"history[{key!r}] must hold numbers.") from None
    lengths = {key: len(v) for key, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"history entries must have equal lengths, got {lengths}.")

    if fig is None:
        fig = _new_figure((6.0, 2.4 * len(ys) + 0.4), layout="constrained")
    axes = np.asarray(fig.subplots(len(ys), 1, sharex=True, squeeze=False))[:, 0]
    xs = columns[x]
    for ax, key in zip(axes, ys):
        values = columns[key]
        ok = np.isfinite(xs) & np.isfinite(values)
        # Markers as well as a line: sparse logs (e.g. validation every few steps) stay visible.
        ax.plot(xs[ok], values[ok], marker="o" if ok.sum() <= 50 else None, markersize=3)
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel(x)
    if title is not None:
        fig.suptitle(title)
    return fig
