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


def test_instance_norm_epsilon_is_pytorchs_when_asked():
    # One convolution then instance norm; a tiny input scale makes the variance offset visible.
    x = 1e-3 * jax.random.normal(jax.random.PRNGKey(1), (2, 4, 4, 1))
    plain = with_num_classes(ConvNet(width=3, depth=1), 2)
    variables = init_variables(plain, jax.random.PRNGKey(0), (4, 4, 1))
    conv = jax.lax.conv_general_dilated(x, variables["params"]["conv_0"]["kernel"], (1, 1),
                                        ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    conv = conv + variables["params"]["conv_0"]["bias"]

    def expected(eps):  # GroupNorm with a group per channel: (x - mean) / sqrt(var + eps)
        mean = conv.mean(axis=(1, 2), keepdims=True)
        var = ((conv - mean) ** 2).mean(axis=(1, 2), keepdims=True)
        z = jax.nn.relu((conv - mean) / jnp.sqrt(var + eps))
        return z.reshape(2, 2, 2, 2, 2, 3).mean(axis=(2, 4)).reshape(2, -1)

    for eps, net in ((1e-5, ConvNet(width=3, depth=1, norm="instance", norm_epsilon=1e-5)),
                     (1e-6, ConvNet(width=3, depth=1, norm="instance"))):
        net = with_num_classes(net, 2)
        v = init_variables(net, jax.random.PRNGKey(0), (4, 4, 1))
        feats = net.apply(v, x, return_features=True)
        np.testing.assert_allclose(feats, expected(eps), rtol=2e-3, atol=1e-5)
        assert not np.allclose(feats, expected(1e-5 if eps == 1e-6 else 1e-6), rtol=2e-2)
    with pytest.raises(ValueError, match="norm_epsilon"):
        ConvNet(norm="instance", norm_epsilon=0.0)


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


# --------------------------------------------------------------------------------------------
# ResNet18 and VGG11 (the cross-architecture networks)
# --------------------------------------------------------------------------------------------

from sklearn.base import clone  # noqa: E402

from sklearn_distill import VGG11, NeuralNetClassifier, ResNet18, evaluate, load_digits_images  # noqa: E402


def _n_params(net, shape, n_classes=10):
    variables = jax.eval_shape(
        lambda: init_variables(with_num_classes(net, n_classes), jax.random.PRNGKey(0), shape))
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize("cls", [ResNet18, VGG11])
@pytest.mark.parametrize("norm, shape", [("none", (8, 8, 1)), ("instance", (8, 8, 1)),
                                         ("layer", (8, 8, 1)), ("batch", (8, 8, 1)),
                                         ("batch", (28, 28, 1)), ("none", (32, 32, 3))])
def test_cross_architecture_nets_output_shapes(cls, norm, shape):
    net = with_num_classes(cls(width=2, norm=norm), 5)
    variables = init_variables(net, jax.random.PRNGKey(0), shape)
    assert ("batch_stats" in variables) == (norm == "batch") == has_batch_norm(net)
    x = jax.random.normal(jax.random.PRNGKey(1), (3,) + shape)
    assert net.apply(variables, x).shape == (3, 5)
    # Penultimate features: 8 * width channels, pooled (ResNet) or on a 1x1 map (VGG).
    assert net.apply(variables, x, return_features=True).shape == (3, 16)
    if norm == "batch":
        logits, state = net.apply(variables, x, train=True, mutable=["batch_stats"])
        assert logits.shape == (3, 5)
        before = jax.tree.leaves(variables["batch_stats"])
        after = jax.tree.leaves(state["batch_stats"])
        assert len(before) == len(after) and any(not np.allclose(a, b) for a, b in zip(before, after))
    else:
        assert net.apply(variables, x, train=True).shape == (3, 5)


def test_cross_architecture_nets_distinguish_inputs_on_small_maps():
    # On 8x8 digits VGG11's last convolutions see a 1x1 map; instance norm is skipped there, so
    # different images still give different features.
    for net in (VGG11(width=2, norm="instance"), ResNet18(width=2, norm="instance")):
        net = with_num_classes(net, 3)
        variables = init_variables(net, jax.random.PRNGKey(0), (8, 8, 1))
        x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 1))
        feats = np.asarray(net.apply(variables, x, return_features=True))
        assert np.ptp(feats, axis=0).max() > 1e-4


def test_resnet18_parameter_count_matches_standard_architecture():
    # The CIFAR ResNet-18 (3x3 stem, no max-pool, bias-free convolutions before batch norm,
    # 1x1 projection shortcuts, 512 -> 10 head) has 11,173,962 parameters.
    assert _n_params(ResNet18(width=64, norm="batch"), (32, 32, 3)) == 11_173_962
    # Without norm: 9,600 batch-norm scales/shifts fewer, 4,800 convolution biases more.
    assert _n_params(ResNet18(width=64, norm="none"), (32, 32, 3)) == 11_173_962 - 9_600 + 4_800


def test_vgg11_parameter_count_matches_standard_architecture():
    # Configuration A on 32x32x3 with convolution biases and a 512 -> 10 linear head:
    # 3*3*(3*64 + 64*128 + 128*256 + 256*256 + 256*512 + 3*512*512) weights
    # + (64 + 128 + 2*256 + 4*512) biases + 512*10 + 10 = 9,225,610.
    weights = 9 * (3 * 64 + 64 * 128 + 128 * 256 + 256 * 256 + 256 * 512 + 3 * 512 * 512)
    biases = 64 + 128 + 2 * 256 + 4 * 512
    assert weights + biases + 512 * 10 + 10 == 9_225_610
    assert _n_params(VGG11(width=64, norm="none"), (32, 32, 3)) == 9_225_610
    # Batch norm adds a scale and a shift per channel of every convolution.
    assert _n_params(VGG11(width=64, norm="batch"), (32, 32, 3)) == 9_225_610 + 2 * biases


@pytest.mark.parametrize("cls", [ResNet18, VGG11])
def test_cross_architecture_specs_pickle_clone_and_validate(cls):
    spec = cls(width=8, norm="batch")
    assert hash(spec) == hash(cls(width=8, norm="batch"))
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert with_num_classes(spec, 3).num_classes == 3 and spec.num_classes is None
    # An estimator holding the spec clones with an equal spec (scikit-learn's clone check).
    clf = NeuralNetClassifier(model=spec, n_steps=3)
    assert clone(clf).get_params()["model"] == spec
    # The protocol's evaluation network of a distiller is its model without norm.
    assert spec.clone(norm="none", activation="relu", parent=None).norm == "none"
    with pytest.raises(ValueError, match="norm"):
        cls(norm="group")
    with pytest.raises(ValueError, match="width"):
        cls(width=0)
    with pytest.raises(ValueError, match="num_classes"):
        spec.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits_images(return_X_y=True)
    X = ((X - X.mean()) / X.std()).astype(np.float32)
    return X[:1000], y[:1000], X[1000:], y[1000:]


@pytest.mark.parametrize("model", [ResNet18(width=4, norm="batch"), VGG11(width=4, norm="batch")],
                         ids=["resnet18", "vgg11"])
def test_cross_architecture_nets_train_above_chance_on_digits(model, digits_split):
    X_tr, y_tr, X_te, y_te = digits_split
    clf = NeuralNetClassifier(model=model, n_steps=60, batch_size=64, learning_rate=1e-2,
                              augment="none", random_state=0).fit(X_tr, y_tr)
    # Batch statistics are trained and kept with the fitted classifier (used at prediction).
    assert "batch_stats" in clf.variables_
    score = clf.score(X_te, y_te)
    assert score > 0.5  # chance is 0.1
    # The fitted classifier pickles and predicts the same afterwards.
    assert pickle.loads(pickle.dumps(clf)).score(X_te, y_te) == score


def test_cross_architecture_net_in_evaluate(digits_split):
    X_tr, y_tr, X_te, y_te = digits_split
    result = evaluate(X_tr[:200], y_tr[:200], X_te, y_te, n_models=2,
                      model=ResNet18(width=4, norm="batch"), n_steps=30, learning_rate=3e-3,
                      batch_size=64, augment="none", random_state=0)
    assert result.scores.shape == (2,) and result.mean > 0.2


def test_convnet_norm_before_layout_matches_frepo():
    # FRePo's layout: batch norm on the input of convolutions 2..d, none after the last one, so
    # the features are the pooled ReLU of the last convolution, not normalised.
    net = with_num_classes(ConvNet(width=3, depth=2, norm="batch", norm_position="before"), 4)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 1))
    variables = net.init(jax.random.PRNGKey(0), x)
    assert sorted(variables["batch_stats"]) == ["norm_1"]
    assert variables["params"]["norm_1"]["scale"].shape == (3,)  # the input channels of conv_1
    params = variables["params"]

    def conv(name, h, pad):
        return jax.lax.conv_general_dilated(h, params[name]["kernel"], (1, 1), [(pad, pad)] * 2,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC")) \
            + params[name]["bias"]

    def pool(h):
        return jax.lax.reduce_window(h, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4

    h = pool(jax.nn.relu(conv("conv_0", x, 1)))
    h = h / jnp.sqrt(1.0 + 1e-5)  # the fresh running statistics: mean 0, variance 1
    expected = pool(jax.nn.relu(conv("conv_1", h, 1))).reshape(2, -1)
    features = net.apply(variables, x, return_features=True)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)


def test_convnet_norm_momentum_sets_running_average_decay():
    x = jax.random.normal(jax.random.PRNGKey(1), (6, 8, 8, 1)) + 1.0
    means = {}
    for momentum in (0.1, 0.9):
        net = with_num_classes(ConvNet(width=2, depth=1, norm="batch", norm_momentum=momentum), 2)
        variables = net.init(jax.random.PRNGKey(0), x)
        _, updates = net.apply(variables, x, train=True, mutable=["batch_stats"])
        means[momentum] = np.asarray(updates["batch_stats"]["norm_0"]["mean"])
    # running = momentum * 0 + (1 - momentum) * batch mean
    np.testing.assert_allclose(means[0.1], 9 * means[0.9], rtol=1e-5)
    with pytest.raises(ValueError, match="norm_momentum"):
        ConvNet(norm_momentum=1.0)
    with pytest.raises(ValueError, match="norm_position"):
        ConvNet(norm_position="middle")


def test_frepo_and_rcig_default_networks_follow_official_layouts():
    from sklearn_distill import FRePoDistiller, RCIGDistiller

    frepo = FRePoDistiller()._distill_model((32, 32, 3))
    assert (frepo.norm, frepo.norm_position, frepo.norm_momentum) == ("batch", "before", 0.1)
    rcig = RCIGDistiller()._distill_model((32, 32, 3))
    assert (rcig.norm, rcig.norm_position, rcig.norm_momentum) == ("none", "after", 0.1)
    # RCIG's configurations: softplus at depth 3 only; depth 4 at 64 px, 5 at 128 px, with ReLU
    assert (rcig.depth, rcig.activation) == (3, "softplus")
    for size, depth in ((64, 4), (128, 5)):
        net = RCIGDistiller()._distill_model((size, size, 3))
        assert (net.depth, net.activation) == (depth, "relu")
