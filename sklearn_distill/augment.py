"""Differentiable image augmentation in JAX, in the style of DSA.

Dataset distillation back-propagates through augmentation (Zhao & Bilen, "Dataset Condensation
with Differentiable Siamese Augmentation", 2021), so every operation here is a smooth function of
the pixels: geometric operations are one per-sample affine warp with bilinear sampling, colour
operations are affine maps of the intensities and cutout is a multiplicative mask. Randomness is
drawn up front by :meth:`ImageAugmentation.sample_params` and consumed by
:meth:`ImageAugmentation.apply`, so one draw can be applied to two batches ("siamese"
augmentation: real and synthetic images see the same transformation).

Images are floating-point ``NHWC`` arrays. Everything is pure (explicit keys, no global state)
and works under :func:`jax.jit`, :func:`jax.vmap` and :func:`jax.grad`.
"""

import dataclasses
import functools
import math
from numbers import Integral, Real

import jax
import jax.numpy as jnp

__all__ = ["ImageAugmentation", "flip_images"]

_MODES = ("all", "one", "one_per_batch")
_STYLES = ("dsa", "augmax")
# Operation groups in the order DSA lists them; in ``mode="one"`` each sample gets one of these.
_GROUPS = ("colour", "crop", "cutout", "flip", "scale", "rotate")


@dataclasses.dataclass(frozen=True)
class ImageAugmentation:
    """Random, differentiable augmentation of a batch of ``NHWC`` images.

    The operations follow DSA (Zhao & Bilen, 2021). With ``u ~ U[0, 1]`` drawn per sample:

    * ``flip``: mirror left-right with probability 1/2;
    * ``crop``: translate by a whole number of pixels, up to ``round(crop_ratio * size)`` in each
      direction, filling with zeros (random crop of a zero-padded image);
    * ``scale``: stretch each axis by its own factor in ``[1 / (1 + scale_ratio), 1 + scale_ratio]``;
    * ``rotate``: rotate about the centre by an angle in ``[-rotate_degrees, rotate_degrees]``;
    * ``colour``: brightness ``x + (u - 1/2) * brightness``, then saturation
      ``m + (x - m) * u * saturation`` with ``m`` the per-pixel channel mean (skipped for
      one-channel images, where it is the identity), then contrast
      ``m + (x - m) * (u + contrast)`` with ``m`` the image mean;
    * ``cutout``: zero a square of side ``round(cutout_ratio * size)`` whose centre is uniform over
      the image (the square is clipped at the border).

    Crop, scale and rotate are composed into a single affine map per sample and applied with one
    bilinear gather, so enabling all three costs one resampling pass.

    ``style="augmax"`` gives the operations of the augmax library as FRePo and RCIG use them
    (``lib/dataset/augmax/`` of yongchao97/FRePo at commit 9b98c65) instead:

    * ``colour``: brightness ``x + (u - 1/2) * brightness``, then contrast and then saturation
      with factors ``exp((2u - 1) * colour_log_range)`` (log-uniform), about the same means;
    * ``crop``: a continuous translation, uniform within ``crop_ratio * size`` in each
      direction, bilinear;
    * ``scale``: a zoom by one factor for both axes, log-uniform in
      ``[1 / (1 + scale_ratio), 1 + scale_ratio]``, its centre offset uniform within the
      overhang ``|size * (zoom - 1)| / 2``;
    * ``cutout``: a square of side ``floor(cutout_ratio * size)`` lying entirely inside the
      image;
    * geometric operations repeat the edge pixels outside the image instead of reading zeros.

    FRePo's strengths are ``brightness=0.5, colour_log_range=0.25, scale_ratio=0.25,
    cutout_ratio=0.25`` (:func:`~sklearn_distill.get_protocol` builds them).

    Parameters
    ----------
    flip, crop, scale, rotate, colour, cutout : bool
        Which operations are enabled. Defaults: everything but ``flip``.
    crop_ratio : float, default=0.125
        Largest translation as a fraction of the image height / width, in ``[0, 0.5]``.
    scale_ratio : float, default=0.2
        Largest relative stretch; factors are drawn from ``[1 / (1 + r), 1 + r]``.
    rotate_degrees : float, default=15.0
        Largest rotation angle, in degrees, in ``[0, 180]``.
    brightness : float, default=1.0
        Width of the additive brightness range (shift in ``[-b / 2, b / 2]``).
    saturation : float, default=2.0
        Upper end of the saturation factor range ``[0, saturation]``.
    contrast : float, default=0.5
        Lower end of the contrast factor range ``[contrast, contrast + 1]``.
    cutout_ratio : float, default=0.5
        Side of the cutout square as a fraction of the image side, in ``[0, 1]``.
    mode : {"all", "one", "one_per_batch"}, default="all"
        ``"all"`` applies every enabled operation to every sample; ``"one"`` applies a single
        enabled operation per sample, chosen uniformly; ``"one_per_batch"`` chooses one
        operation for the whole batch (DSA's and FRePo's evaluation), each sample still drawing
        its own parameters.
    style : {"dsa", "augmax"}, default="dsa"
        The family of the operations' definitions (see above).
    colour_log_range : float, default=0.25
        Half-width of the log-uniform contrast and saturation factors; only with
        ``style="augmax"``.

    Notes
    -----
    The class is a frozen dataclass, hence hashable and usable as a static argument of
    :func:`jax.jit`. Gradients with respect to the images are exact; the random parameters are
    treated as constants (crop shifts and cutout positions are integers).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> aug = ImageAugmentation.default_for(n_channels=3)
    >>> images = jnp.ones((4, 8, 8, 3))
    >>> aug(jax.random.key(0), images).shape
    (4, 8, 8, 3)

    Siamese use: one draw applied to two batches.

    >>> params = aug.sample_params(jax.random.key(1), 4)
    >>> a = aug.apply(params, images)
    >>> b = aug.apply(params, images)
    >>> bool(jnp.all(a == b))
    True
    """

    flip: bool = False
    crop: bool = True
    scale: bool = True
    rotate: bool = True
    colour: bool = True
    cutout: bool = True
    crop_ratio: float = 0.125
    scale_ratio: float = 0.2
    rotate_degrees: float = 15.0
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5
    cutout_ratio: float = 0.5
    mode: str = "all"
    style: str = "dsa"
    colour_log_range: float = 0.25

    def __post_init__(self):
        for name in ("flip", "crop", "scale", "rotate", "colour", "cutout"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"ImageAugmentation: `{name}` must be a bool, got {value!r}.")
        bounds = {"crop_ratio": (0.0, 0.5), "scale_ratio": (0.0, math.inf),
                  "rotate_degrees": (0.0, 180.0), "brightness": (0.0, math.inf),
                  "saturation": (0.0, math.inf), "contrast": (0.0, math.inf),
                  "cutout_ratio": (0.0, 1.0), "colour_log_range": (0.0, math.inf)}
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, Real)
                    or not low <= value <= high):
                raise ValueError(f"ImageAugmentation: `{name}` must be a number in "
                                 f"[{low}, {high}], got {value!r}.")
        if self.mode not in _MODES:
            raise ValueError(f"ImageAugmentation: `mode` must be one of {_MODES}, "
                             f"got {self.mode!r}.")
        if self.style not in _STYLES:
            raise ValueError(f"ImageAugmentation: `style` must be one of {_STYLES}, "
                             f"got {self.style!r}.")

    @classmethod
    def default_for(cls, n_channels):
        """The evaluation-protocol augmentation for images with ``n_channels`` channels.

        Flipping is only used for colour (3-channel) images: mirrored digits or characters are
        different symbols. Every other operation is on, with the DSA magnitudes, and each image
        gets *one* randomly chosen operation (``mode="one"``), as DSA's single-operation mode and
        FRePo's evaluation do: all of them at once is too strong a distortion for tiny images
        (on 8x8 digits it cost 17 points of full-data accuracy).

        Parameters
        ----------
        n_channels : int
            Number of image channels (1 for greyscale, 3 for RGB).

        Returns
        -------
        ImageAugmentation

        Examples
        --------
        >>> ImageAugmentation.default_for(1).flip, ImageAugmentation.default_for(3).flip
        (False, True)
        """
        if isinstance(n_channels, bool) or not isinstance(n_channels, Integral) or n_channels < 1:
            raise ValueError(f"`n_channels` must be a positive integer, got {n_channels!r}.")
        return cls(flip=int(n_channels) == 3, mode="one")

    @property
    def enabled(self):
        """Names of the enabled operation groups, in application order."""
        return tuple(g for g in _GROUPS if getattr(self, g))

    def sample_params(self, key, n):
        """Draw the random parameters of ``n`` augmentations.

        Parameters
        ----------
        key : jax.Array
            A JAX random key.
        n : int
            Batch size (static).

        Returns
        -------
        params : dict of str to jax.Array
            One entry per enabled operation, each with leading dimension ``n``: ``"flip"``
            (bool); ``"translate"`` (``(n, 2)``, ``(dy, dx)`` in ``[0, 1)``, mapped to whole-pixel
            shifts in ``[-m, m]``); ``"scale"`` (``(n, 2)`` factors for ``(y, x)``); ``"rotate"``
            (radians); ``"brightness"`` (additive shift), ``"saturation"`` and ``"contrast"``
            (factors); ``"cutout"`` (``(n, 2)`` centre as fractions of ``(H, W)``). Values may be
            edited or built by hand, e.g. to apply a fixed transformation.

        Examples
        --------
        >>> import jax
        >>> p = ImageAugmentation(mode="all").sample_params(jax.random.key(0), 5)
        >>> sorted(p)
        ['brightness', 'contrast', 'cutout', 'rotate', 'saturation', 'scale', 'translate']
        >>> p["rotate"].shape
        (5,)
        """
        if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
            raise ValueError(f"`n` must be a non-negative integer, got {n!r}.")
        # One uniform draw for everything, independent of the configuration: the random-bits kernel
        # is the slow part to compile, so it is compiled once per batch size and shared; the fixed
        # column layout keeps each operation's numbers unchanged when others are toggled.
        extra = None
        if self.style == "augmax":
            extra = _uniform_jit(jax.random.fold_in(key, 1), int(n))
        return _params_jit(self, _uniform_jit(key, int(n)), extra)

    def _params(self, u, extra=None):
        n = u.shape[0]
        if self.style == "augmax":
            return self._params_augmax(u, extra, n)
        params = {}
        if self.flip:
            params["flip"] = u[:, 0] < 0.5
        if self.crop:
            params["translate"] = u[:, 1:3]
        if self.scale:
            low, high = 1.0 / (1.0 + self.scale_ratio), 1.0 + self.scale_ratio
            params["scale"] = low + (high - low) * u[:, 3:5]
        if self.rotate:
            params["rotate"] = (2.0 * u[:, 5] - 1.0) * math.radians(self.rotate_degrees)
        if self.colour:
            params["brightness"] = (u[:, 6] - 0.5) * self.brightness
            params["saturation"] = u[:, 7] * self.saturation
            params["contrast"] = u[:, 8] + self.contrast
        if self.cutout:
            params["cutout"] = u[:, 9:11]
        return self._select(params, u, n)

    def _params_augmax(self, u, extra, n):
        params = {}
        log_zoom = math.log1p(self.scale_ratio)
        if self.flip:
            params["flip"] = u[:, 0] < 0.5
        if self.crop:
            params["translate"] = u[:, 1:3]
        if self.scale:
            zoom = jnp.exp((2.0 * u[:, 3] - 1.0) * log_zoom)
            # Source = destination / zoom + offset: the same factor on both axes.
            params["scale"] = jnp.stack([1.0 / zoom, 1.0 / zoom], axis=1)
            params["zoom_shift"] = 2.0 * extra[:, 0:2] - 1.0  # times the overhang in _affine
        if self.rotate:
            params["rotate"] = (2.0 * u[:, 5] - 1.0) * math.radians(self.rotate_degrees)
        if self.colour:
            params["brightness"] = (u[:, 6] - 0.5) * self.brightness
            params["saturation"] = jnp.exp((2.0 * u[:, 7] - 1.0) * self.colour_log_range)
            params["contrast"] = jnp.exp((2.0 * u[:, 8] - 1.0) * self.colour_log_range)
        if self.cutout:
            params["cutout"] = u[:, 9:11]
        return self._select(params, u, n)

    def _select(self, params, u, n):
        if self.mode == "all" or len(self.enabled) < 2:
            return params
        choice_u = u[:, 11]
        if self.mode == "one_per_batch":
            choice_u = jnp.broadcast_to(u[:1, 11], (n,))
        return self._keep_one(params, choice_u, n)

    def _keep_one(self, params, u, n):
        """Reset all but one randomly chosen operation group of each sample to the identity."""
        groups = self.enabled
        choice = jnp.minimum(jnp.floor(u * len(groups)).astype(jnp.int32), len(groups) - 1)
        active = {g: choice == i for i, g in enumerate(groups)}
        # Identity values: no flip / shift / rotation, unit factors, cutout centre far outside.
        identity = {"flip": False, "translate": 0.5, "scale": 1.0, "rotate": 0.0,
                    "brightness": 0.0, "saturation": 1.0, "contrast": 1.0, "cutout": -10.0,
                    "zoom_shift": 0.0}
        group_of = {"flip": "flip", "translate": "crop", "scale": "scale", "zoom_shift": "scale",
                    "rotate": "rotate",
                    "brightness": "colour", "saturation": "colour", "contrast": "colour",
                    "cutout": "cutout"}
        out = {}
        for name, value in params.items():
            on = active[group_of[name]].reshape((n,) + (1,) * (value.ndim - 1))
            out[name] = jnp.where(on, value, jnp.asarray(identity[name], value.dtype))
        return out

    def apply(self, params, images):
        """Apply drawn augmentation parameters to a batch of images.

        Parameters
        ----------
        params : dict
            Output of :meth:`sample_params` for the same configuration and batch size.
        images : array of shape (n, H, W, C)
            Floating-point images.

        Returns
        -------
        jax.Array of shape (n, H, W, C)
            Augmented images, same dtype as ``images``.

        Examples
        --------
        >>> import jax, jax.numpy as jnp
        >>> aug = ImageAugmentation(crop=False, scale=False, rotate=False, colour=False,
        ...                         cutout=False, flip=True)
        >>> x = jnp.arange(4.0).reshape(1, 1, 4, 1)
        >>> y = aug.apply({"flip": jnp.array([True])}, x)
        >>> y[0, 0, :, 0].tolist()
        [3.0, 2.0, 1.0, 0.0]
        """
        images = _check_images(images)
        n = images.shape[0]
        required = self._param_names()
        missing = [k for k in required if k not in params]
        if missing:
            raise ValueError(f"`params` lacks {missing}: draw it with sample_params of the same "
                             "ImageAugmentation configuration.")
        for k in required:
            if jnp.shape(params[k])[:1] != (n,):
                raise ValueError(f"`params[{k!r}]` has leading dimension "
                                 f"{jnp.shape(params[k])[:1]}, expected ({n},) to match `images`.")
        params = {k: jnp.asarray(params[k]) for k in required}
        return _apply_jit(self, params, images)

    def _apply(self, params, x):
        n = x.shape[0]
        if self.colour:
            x = self._colour(params, x)
        if self.flip:
            flip = params["flip"].reshape(n, 1, 1, 1)
            x = jnp.where(flip, x[:, :, ::-1], x)
        if self.crop or self.scale or self.rotate:
            x = self._affine(params, x)
        if self.cutout:
            x = self._cutout(params, x)
        return x

    def __call__(self, key, images):
        """Draw parameters with ``key`` and apply them: ``apply(sample_params(key, n), images)``.

        Examples
        --------
        >>> import jax, jax.numpy as jnp
        >>> ImageAugmentation()(jax.random.key(0), jnp.zeros((2, 6, 6, 1))).shape
        (2, 6, 6, 1)
        """
        images = _check_images(images)
        return self.apply(self.sample_params(key, images.shape[0]), images)

    # -- operations ---------------------------------------------------------------------------

    def _param_names(self):
        names = []
        if self.flip:
            names.append("flip")
        if self.crop:
            names.append("translate")
        if self.scale:
            names.append("scale")
            if self.style == "augmax":
                names.append("zoom_shift")
        if self.rotate:
            names.append("rotate")
        if self.colour:
            names += ["brightness", "saturation", "contrast"]
        if self.cutout:
            names.append("cutout")
        return names

    def _colour(self, params, x):
        dtype = x.dtype
        n, _, _, c = x.shape
        x = x + params["brightness"].astype(dtype).reshape(n, 1, 1, 1)
        if self.style == "augmax":
            # augmax's order: contrast about the image mean, then saturation.
            mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
            x = mean + (x - mean) * params["contrast"].astype(dtype).reshape(n, 1, 1, 1)
            if c > 1:
                mean = jnp.mean(x, axis=-1, keepdims=True)
                x = mean + (x - mean) * params["saturation"].astype(dtype).reshape(n, 1, 1, 1)
            return x
        if c > 1:
            # With one channel the channel mean is the pixel itself: saturation is the identity.
            mean = jnp.mean(x, axis=-1, keepdims=True)
            x = mean + (x - mean) * params["saturation"].astype(dtype).reshape(n, 1, 1, 1)
        mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
        return mean + (x - mean) * params["contrast"].astype(dtype).reshape(n, 1, 1, 1)

    def _affine(self, params, x):
        """Resample each image through its own affine map (output pixel -> source pixel)."""
        dtype = x.dtype
        n, h, w, c = x.shape
        # Pixel units centred on the image, so rotations are rigid for non-square images too.
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
        v, u = jnp.meshgrid(jnp.arange(h, dtype=dtype) - cy, jnp.arange(w, dtype=dtype) - cx,
                            indexing="ij")
        a = jnp.ones((n,), dtype)
        b = jnp.zeros((n,), dtype)
        d = jnp.ones((n,), dtype)
        e = jnp.zeros((n,), dtype)
        # Source = R(theta) @ diag(sx, sy) @ dest + t, built up as the 2x2 matrix [[a, b], [e, d]]
        # acting on (u, v) = (column, row) offsets from the centre.
        if self.scale:
            s = params["scale"].astype(dtype)
            a, d = a * s[:, 1], d * s[:, 0]
        if self.rotate:
            cos, sin = jnp.cos(params["rotate"]).astype(dtype), jnp.sin(params["rotate"]).astype(dtype)
            a, b, e, d = cos * a, -sin * d, sin * a, cos * d
        ty = jnp.zeros((n,), dtype)
        tx = jnp.zeros((n,), dtype)
        if self.crop and self.style == "augmax":
            # A continuous shift within crop_ratio of the side, bilinear.
            t = params["translate"].astype(dtype)
            ty = (2.0 * t[:, 0] - 1.0) * self.crop_ratio * h
            tx = (2.0 * t[:, 1] - 1.0) * self.crop_ratio * w
        elif self.crop:
            # Whole-pixel shifts, as a random crop of a zero-padded image: no interpolation blur.
            max_dy, max_dx = round(self.crop_ratio * h), round(self.crop_ratio * w)
            t = params["translate"].astype(dtype)
            ty = jnp.clip(jnp.floor(t[:, 0] * (2 * max_dy + 1)), 0, 2 * max_dy) - max_dy
            tx = jnp.clip(jnp.floor(t[:, 1] * (2 * max_dx + 1)), 0, 2 * max_dx) - max_dx
        if self.scale and self.style == "augmax":
            # The zoom's centre moves within the overhang |size (zoom - 1)| / 2, in source pixels.
            inv = params["scale"][:, 0].astype(dtype)
            shift = params["zoom_shift"].astype(dtype)
            ty = ty + shift[:, 0] * jnp.abs(h * (1.0 - inv)) / 2.0
            tx = tx + shift[:, 1] * jnp.abs(w * (1.0 - inv)) / 2.0
        bc = lambda z: z.reshape(n, 1, 1)  # noqa: E731
        src_x = bc(a) * u + bc(b) * v + bc(tx) + cx
        src_y = bc(e) * u + bc(d) * v + bc(ty) + cy
        return _bilinear(x, src_y, src_x, edge=self.style == "augmax")

    def _cutout(self, params, x):
        n, h, w, _ = x.shape
        centre = params["cutout"]
        if self.style == "augmax":
            # A square of side floor(ratio * size), entirely inside the image.
            size_h, size_w = int(self.cutout_ratio * h), int(self.cutout_ratio * w)
            top = jnp.floor(centre[:, 0] * (h - size_h + 1)).astype(jnp.int32)
            left = jnp.floor(centre[:, 1] * (w - size_w + 1)).astype(jnp.int32)
        else:
            size_h = int(self.cutout_ratio * h + 0.5)
            size_w = int(self.cutout_ratio * w + 0.5)
            # Integer top-left corners: the square's centre is uniform over the image.
            top = jnp.floor(centre[:, 0] * h).astype(jnp.int32) - size_h // 2
            left = jnp.floor(centre[:, 1] * w).astype(jnp.int32) - size_w // 2
        rows = jnp.arange(h)[None, :]
        cols = jnp.arange(w)[None, :]
        in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size_h)
        in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size_w)
        keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
        return x * keep[..., None].astype(x.dtype)


def _check_images(images):
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"`images` must be a 4-D NHWC array, got shape {tuple(images.shape)}.")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"`images` must be floating point, got dtype {images.dtype}.")
    return images


# Compiled once per configuration and shape: eager calls then cost one dispatch instead of one per
# primitive, and inside an outer jit / vmap / grad these simply inline.
@functools.partial(jax.jit, static_argnums=1)
def _uniform_jit(key, n):
    return jax.random.uniform(key, (n, 12))


@functools.partial(jax.jit, static_argnums=0)
def _params_jit(aug, u, extra):
    return aug._params(u, extra)


@functools.partial(jax.jit, static_argnums=0)
def _apply_jit(aug, params, images):
    return aug._apply(params, images)


def _bilinear(images, src_y, src_x, edge=False):
    """Bilinear sampling of ``images`` (n, H, W, C) at (n, H', W') source coordinates.

    Points outside the image read zeros, or with ``edge`` the nearest edge pixel. The four neighbours of every output pixel are fetched
    with one batched gather, whose transpose (a scatter-add) carries the gradient to the pixels.
    """
    n, h, w, c = images.shape
    if edge:
        src_y = jnp.clip(src_y, 0, h - 1)
        src_x = jnp.clip(src_x, 0, w - 1)
    y0 = jnp.floor(src_y)
    x0 = jnp.floor(src_x)
    wy1 = src_y - y0
    wx1 = src_x - x0
    y0 = y0.astype(jnp.int32)
    x0 = x0.astype(jnp.int32)
    ys = jnp.stack([y0, y0, y0 + 1, y0 + 1], axis=1)
    xs = jnp.stack([x0, x0 + 1, x0, x0 + 1], axis=1)
    weights = jnp.stack([(1 - wy1) * (1 - wx1), (1 - wy1) * wx1,
                         wy1 * (1 - wx1), wy1 * wx1], axis=1)
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    weights = jnp.where(inside, weights, 0).astype(images.dtype)
    flat_index = (jnp.clip(ys, 0, h - 1) * w + jnp.clip(xs, 0, w - 1)).reshape(n, -1)
    flat = images.reshape(n, h * w, c)
    gathered = jax.vmap(lambda img, idx: img[idx])(flat, flat_index)
    gathered = gathered.reshape((n, 4) + src_y.shape[1:] + (c,))
    return jnp.sum(weights[..., None] * gathered, axis=1)


def flip_images(x):
    """Mirror NHWC images horizontally (the width axis).

    FRePo and RCIG add the mirrored synthetic images to their regression as extra support points.
    """
    return jnp.flip(x, axis=2)
