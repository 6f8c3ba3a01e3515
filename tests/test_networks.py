import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sklearn_distill.networks import (MLP, ConvNet, has_batch_norm, init_variables,
                                      with_num_classes)


@pytest.mark.parametrize("norm", ["none", "batch", "instance", "layer"])
def test_convnet_norms_and_shapes(norm):
    net = with_num_classes(ConvNet(width=4, depth=3, norm=norm), 5)
    variables = init_variables(net, jax.random.PRNGKey(0), (8, 8, 1))
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 8, 1))
    if has_batch_norm(net):
        logits, state = net.apply(variables, x, train=True, mutable=["batch_stats"])
        assert "batch_stats" in state
    else:
        logits = net.apply(variables, x, train=True)
    assert logits.shape == (3, 5)
    assert ("batch_stats" in variables) == (norm == "batch")


def test_mnist_padding_reaches_four_by_four():
    # The papers pad 28 px MNIST by 3 in the first layer so three poolings end on 4x4.
    net = with_num_classes(ConvNet(width=2, depth=3), 10)
    variables = init_variables(net, jax.random.PRNGKey(0), (28, 28, 1))
    feats = net.apply(variables, jnp.zeros((1, 28, 28, 1)), return_features=True)
    assert feats.shape == (1, 4 * 4 * 2)
    # 32 px CIFAR needs no extra padding.
    variables = init_variables(net, jax.random.PRNGKey(0), (32, 32, 3))
    assert net.apply(variables, jnp.zeros((1, 32, 32, 3)), return_features=True).shape == (1, 32)


def test_width_doubling():
    net = with_num_classes(ConvNet(width=4, depth=3, width_doubling=True), 2)
    params = init_variables(net, jax.random.PRNGKey(0), (8, 8, 3))["params"]
    assert [params[f"conv_{i}"]["kernel"].shape[-1] for i in range(3)] == [4, 8, 16]


def test_pytorch_init_bounds():
    net = with_num_classes(ConvNet(width=8, depth=1, weight_init="pytorch"), 2)
    params = init_variables(net, jax.random.PRNGKey(0), (4, 4, 3))["params"]
    bound = 1 / np.sqrt(9 * 3)
    assert np.abs(params["conv_0"]["kernel"]).max() <= bound + 1e-6
    assert np.abs(params["conv_0"]["bias"]).max() <= bound + 1e-6
    assert np.abs(params["conv_0"]["bias"]).max() > 0  # PyTorch-style biases are not zero


def test_softplus_activation_is_smooth_relu():
    net = with_num_classes(MLP(hidden_sizes=(4,), activation="softplus", softplus_temperature=1e4), 2)
    relu = with_num_classes(MLP(hidden_sizes=(4,)), 2)
    variables = init_variables(net, jax.random.PRNGKey(0), (3,))
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 3))
    np.testing.assert_allclose(net.apply(variables, x), relu.apply(variables, x), atol=1e-3)


def test_specs_are_hashable_picklable_and_validated():
    spec = ConvNet(width=16, norm="batch")
    assert hash(spec) == hash(ConvNet(width=16, norm="batch"))
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert with_num_classes(spec, 3).num_classes == 3 and spec.num_classes is None
    with pytest.raises(ValueError, match="norm"):
        ConvNet(norm="group")
    with pytest.raises(ValueError, match="activation"):
        MLP(activation="tanh")
    with pytest.raises(ValueError, match="num_classes"):
        MLP().init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))
    with pytest.raises(ValueError, match="model"):
        with_num_classes("convnet", 3)
