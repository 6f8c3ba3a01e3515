import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sklearn_distill.augment import ImageAugmentation

OFF = dict(flip=False, crop=False, scale=False, rotate=False, colour=False, cutout=False)


def _images(n=4, h=8, w=8, c=3, seed=0):
    # NumPy data: a jax.random draw would compile a new kernel for every shape.
    # (NumPy arrays go in as they are; eager jnp ops in the tests would each compile too.)
    return np.random.default_rng(seed).uniform(size=(n, h, w, c)).astype(np.float32)


@pytest.mark.parametrize("c", [1, 3])
def test_shape_dtype_and_finite(c):
    x = _images(c=c)
    y = ImageAugmentation(flip=True)(jax.random.key(0), x)
    assert y.shape == x.shape
    assert y.dtype == jnp.float32
    assert np.all(np.isfinite(y))


def test_non_square_images():
    x = _images(h=6, w=10, c=1)
    assert ImageAugmentation(flip=True)(jax.random.key(0), x).shape == (4, 6, 10, 1)


def test_identity_when_everything_off():
    x = _images()
    aug = ImageAugmentation(**OFF)
    assert aug.sample_params(jax.random.key(0), 4) == {}
    np.testing.assert_array_equal(aug(jax.random.key(0), x), x)


def test_zero_magnitude_geometry_is_identity():
    x = _images(c=1)
    aug = ImageAugmentation(**{**OFF, "crop": True, "rotate": True, "scale": True},
                            crop_ratio=0.0, rotate_degrees=0.0, scale_ratio=0.0)
    np.testing.assert_allclose(aug(jax.random.key(3), x), x, atol=1e-5)


def test_flip_matches_reversed_columns():
    x = _images()
    aug = ImageAugmentation(**{**OFF, "flip": True})
    params = aug.sample_params(jax.random.key(1), 4)  # a draw that flips some, not all
    y = np.asarray(aug.apply(params, x))
    flipped = np.asarray(params["flip"])
    assert flipped.any() and not flipped.all()
    np.testing.assert_array_equal(y[flipped], x[flipped][:, :, ::-1])
    np.testing.assert_array_equal(y[~flipped], x[~flipped])


def test_rotation_by_quarter_turn_is_rot90():
    x = _images(n=2, h=5, w=5, c=2)
    aug = ImageAugmentation(**{**OFF, "rotate": True}, rotate_degrees=90.0)
    y = aug.apply({"rotate": np.full((2,), np.pi / 2, np.float32)}, x)
    # Output (i, j) samples the source at the quarter-turned position: one of the two rot90s.
    candidates = [np.rot90(np.asarray(x), k, axes=(1, 2)) for k in (1, 3)]
    assert any(np.allclose(y, cand, atol=1e-5) for cand in candidates)


def test_crop_shifts_whole_pixels_with_zero_fill():
    x = _images(n=1, h=8, w=8, c=1)
    aug = ImageAugmentation(**{**OFF, "crop": True}, crop_ratio=0.125)  # up to 1 pixel
    # translate in [0, 1) maps to shifts {-1, 0, 1}: 0.0 -> -1 row, 0.99 -> +1 column.
    y = aug.apply({"translate": np.array([[0.0, 0.99]], np.float32)}, x)
    expected = np.zeros_like(np.asarray(x))
    expected[:, 1:, :-1] = np.asarray(x)[:, :-1, 1:]
    np.testing.assert_allclose(y, expected, atol=1e-6)


def test_cutout_zeroes_a_square():
    x = np.ones((3, 8, 8, 1), np.float32)
    y = np.asarray(ImageAugmentation(**{**OFF, "cutout": True}, cutout_ratio=0.5)(
        jax.random.key(0), x))
    zeros = (y == 0).reshape(3, -1).sum(axis=1)
    assert np.all(zeros > 0) and np.all(zeros <= 16)
    assert set(np.unique(y)) <= {0.0, 1.0}


def test_colour_on_one_channel_skips_saturation():
    x = _images(c=1)
    aug = ImageAugmentation(**{**OFF, "colour": True})
    params = aug.sample_params(jax.random.key(0), 4)
    params = {**params, "brightness": np.zeros(4, np.float32), "contrast": np.ones(4, np.float32)}
    # Only saturation is left, and it cannot change a one-channel image.
    np.testing.assert_allclose(aug.apply(params, x), x, atol=1e-6)
    assert not np.allclose(aug(jax.random.key(1), x), x)


def test_gradient_is_finite_and_nonzero():
    x = _images(c=3)
    aug = ImageAugmentation(flip=True)
    grad = np.asarray(jax.grad(lambda im: jnp.sum(aug(jax.random.key(0), im) ** 2))(x))
    assert grad.shape == x.shape
    assert np.all(np.isfinite(grad))
    assert np.abs(grad).sum() > 0


def test_jit_with_static_config_and_vmap():
    x = _images()
    aug = ImageAugmentation(flip=True)
    assert hash(aug) == hash(ImageAugmentation(flip=True))

    jitted = jax.jit(lambda a, k, im: a(k, im), static_argnums=0)
    key = jax.random.key(5)
    np.testing.assert_allclose(jitted(aug, key, x), aug(key, x), atol=1e-5)

    keys = jax.random.split(key, 3)
    stacked = np.stack([x, x + 1, x + 2])
    aug = ImageAugmentation(**{**OFF, "flip": True, "crop": True})
    out = jax.vmap(aug)(keys, stacked)
    assert out.shape == (3,) + x.shape
    np.testing.assert_allclose(out[1], aug(keys[1], stacked[1]), atol=1e-5)


def test_same_key_same_output_and_different_key_differs():
    x = _images()
    aug = ImageAugmentation(flip=True)
    np.testing.assert_array_equal(aug(jax.random.key(1), x), aug(jax.random.key(1), x))
    assert not np.allclose(aug(jax.random.key(1), x), aug(jax.random.key(2), x))


def test_siamese_same_params_same_output():
    x = _images()
    aug = ImageAugmentation(flip=True)
    params = aug.sample_params(jax.random.key(7), 4)
    np.testing.assert_array_equal(aug.apply(params, x), aug.apply(params, x.copy()))
    # The draw is shared: the augmented difference of two batches is the augmented difference
    # for the linear part (no colour, no cutout).
    geo = ImageAugmentation(flip=True, colour=False, cutout=False)
    p = geo.sample_params(jax.random.key(7), 4)
    x2 = _images(seed=1)
    np.testing.assert_allclose(geo.apply(p, x) - geo.apply(p, x2), geo.apply(p, x - x2),
                               atol=1e-5)


def test_mode_one_applies_a_single_group():
    aug = ImageAugmentation(flip=True, mode="one")
    x = _images(n=64)
    assert aug(jax.random.key(0), x).shape == x.shape
    params = aug.sample_params(jax.random.key(0), 64)
    changed = np.stack([
        np.asarray(params["flip"]),
        np.any(np.asarray(params["translate"]) != 0.5, axis=1),
        np.any(np.asarray(params["scale"]) != 1.0, axis=1),
        np.asarray(params["rotate"]) != 0.0,
        np.asarray(params["brightness"]) != 0.0,
        np.any(np.asarray(params["cutout"]) != -10.0, axis=1),
    ])
    assert np.all(changed.sum(axis=0) <= 1)
    assert np.all(changed.any(axis=1))


def test_default_for():
    assert ImageAugmentation.default_for(3) == ImageAugmentation(flip=True, mode="one")
    assert ImageAugmentation.default_for(1) == ImageAugmentation(mode="one")
    with pytest.raises(ValueError, match="n_channels"):
        ImageAugmentation.default_for(0)


@pytest.mark.parametrize("kwargs, name", [
    ({"crop_ratio": 0.7}, "crop_ratio"), ({"rotate_degrees": -1}, "rotate_degrees"),
    ({"cutout_ratio": 2.0}, "cutout_ratio"), ({"flip": 1}, "flip"), ({"mode": "some"}, "mode"),
])
def test_invalid_configuration(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ImageAugmentation(**kwargs)


def test_invalid_inputs():
    aug = ImageAugmentation()
    with pytest.raises(ValueError, match="4-D"):
        aug(jax.random.key(0), np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="floating"):
        aug(jax.random.key(0), np.zeros((2, 8, 8, 3), np.int32))
    with pytest.raises(ValueError, match="params"):
        aug.apply({}, np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="leading dimension"):
        aug.apply(aug.sample_params(jax.random.key(0), 4), np.zeros((2, 8, 8, 3), np.float32))


# -- augmax style (FRePo, RCIG) and per-batch operation choice ---------------------------------

_FREPO = dict(style="augmax", brightness=0.5, colour_log_range=0.25, scale_ratio=0.25,
              cutout_ratio=0.25, flip=True)


def test_augmax_parameter_ranges():
    p = ImageAugmentation(mode="all", **_FREPO).sample_params(jax.random.key(0), 4000)
    assert -0.25 <= float(p["brightness"].min()) < -0.24 and 0.24 < float(p["brightness"].max()) <= 0.25
    for name in ("contrast", "saturation"):
        log = np.log(np.asarray(p[name]))
        # log-uniform in [e^-0.25, e^0.25]: uniform logarithm, mean 0
        assert -0.25 <= log.min() < -0.24 and 0.24 < log.max() <= 0.25
        assert abs(log.mean()) < 0.01
    scale = np.asarray(p["scale"])
    np.testing.assert_array_equal(scale[:, 0], scale[:, 1])  # one factor for both axes
    log_zoom = -np.log(scale[:, 0])
    assert np.log(0.8) <= log_zoom.min() < np.log(0.81) and np.log(1.24) < log_zoom.max() <= np.log(1.25)
    assert abs(log_zoom.mean()) < 0.01


def test_augmax_cutout_is_a_quarter_side_square_inside_the_image():
    aug = ImageAugmentation(crop=False, scale=False, rotate=False, colour=False, cutout=True,
                            style="augmax", cutout_ratio=0.25)
    out = np.asarray(aug(jax.random.key(1), jnp.ones((64, 32, 32, 1))))
    assert np.all((out == 0).sum(axis=(1, 2, 3)) == 64)  # 8 x 8, never clipped by the border


def test_augmax_translation_is_continuous_and_repeats_edge_pixels():
    aug = ImageAugmentation(crop=True, scale=False, rotate=False, colour=False, cutout=False,
                            style="augmax")
    p = aug.sample_params(jax.random.key(2), 256)
    constant = jnp.full((256, 16, 16, 1), 3.0)
    np.testing.assert_allclose(aug.apply(p, constant), 3.0, rtol=1e-6)  # edge fill, not zeros
    x = jnp.broadcast_to(jnp.arange(16.0)[None, None, :, None], (256, 16, 16, 1))
    shift = np.asarray(aug.apply(p, x))[:, 8, 8, 0] - 8.0  # a pixel far from the border
    assert np.abs(shift).max() <= 2.0 + 1e-5  # 0.125 * 16
    assert np.mean(np.abs(shift - np.round(shift)) > 1e-3) > 0.9  # not whole pixels


@pytest.mark.parametrize("mode, shared", [("one_per_batch", True), ("one", False)])
def test_operation_drawn_per_batch_or_per_image(mode, shared):
    aug = ImageAugmentation(flip=True, crop=False, scale=False, rotate=True, colour=False,
                            cutout=False, mode=mode)
    per_batch = []
    for seed in range(20):
        p = aug.sample_params(jax.random.key(seed), 64)
        rotated = np.asarray(p["rotate"]) != 0
        assert not np.any(rotated & np.asarray(p["flip"]))  # one operation per image
        per_batch.append(rotated.all() or not rotated.any())
    assert all(per_batch) == shared
