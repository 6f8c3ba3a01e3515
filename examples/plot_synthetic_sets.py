"""
==============================
Synthetic sets of every method
==============================

Distil scikit-learn's 8x8 handwritten digits to **one image per class** with each method of the
package: FRePo, RCIG, RaT-BPTT, the KRR baseline of the few-shot translator, and the herding
coreset, which picks real images instead of learning new ones. Then look at the ten images of
each, and train small networks from scratch on each set of ten to see how well it teaches.

The settings are tiny (a ConvNet of width 16 and depth 2, tens to a hundred meta-steps) so that
the whole example runs in about a minute on a laptop CPU, most of it JAX compiling the meta-steps
once. The papers' settings are in the method pages.
"""

# sphinx_gallery_thumbnail_number = 1

# %%
# Data: 1,797 digits, held-out test split
# ---------------------------------------
# ``load_digits_images`` returns ``(n, 8, 8, 1)`` images in [0, 1]. The distillers never see the
# test split; ``score`` uses it to test networks trained on the synthetic sets. As in the papers,
# the pixels are standardised with statistics of the training split, and the test split gets
# the same transform (gradient-based distillers, RCIG in particular, train much worse on raw
# [0, 1] pixels).
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split

from sklearn_distill import (ConvNet, FRePoDistiller, HerdingDistiller, ImageStandardizer,
                             KRRDistiller, RaTBPTTDistiller, RCIGDistiller, load_digits_images,
                             plot_synthetic_images)

X, y = load_digits_images(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.4, stratify=y,
                                                    random_state=0)
scaler = ImageStandardizer().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
print(X_train.shape, X_test.shape)

# %%
# One distiller per method
# ------------------------
# Every distiller takes the same common parameters (``ipc``, ``n_steps``, ``batch_size``,
# ``model``, ...). ``score`` trains ``n_eval_models`` networks from scratch on the synthetic set,
# here the same small ConvNet without normalisation and the same evaluation protocol
# (``eval_protocol="library"``; each method would otherwise use its paper's) for every method, so
# the accuracies below are comparable.
evaluation = dict(n_eval_models=2, eval_steps=200, eval_model=ConvNet(width=16, depth=2),
                  eval_protocol="library", random_state=0)

distillers = {
    "FRePo": FRePoDistiller(
        ipc=1, n_steps=100, learning_rate=1e-2, batch_size=256, pool_size=2,
        max_online_steps=20, model=ConvNet(width=16, depth=2, norm="batch"), log_every=10,
        **evaluation),
    "RCIG": RCIGDistiller(
        ipc=1, n_steps=100, learning_rate=1e-2, batch_size=256, pool_size=2,
        max_online_steps=20, online_steps=1, online_learning_rate=1e-3, n_inner=2, n_hinv=2,
        model=ConvNet(width=16, depth=2, activation="softplus"), log_every=10, **evaluation),
    "RaT-BPTT": RaTBPTTDistiller(
        ipc=1, n_steps=100, learning_rate=2e-2, window=2, unroll=10, inner_learning_rate=1e-2,
        init="real", batch_size=256, model=ConvNet(width=16, depth=2, norm="instance"),
        log_every=10, **evaluation),
    "KRR": KRRDistiller(
        ipc=1, n_steps=100, batch_size=256, model=ConvNet(width=16, depth=2), log_every=10,
        **evaluation),
    "Herding": HerdingDistiller(ipc=1, **evaluation),
}

accuracy = {}
for name, distiller in distillers.items():
    distiller.fit(X_train, y_train)
    accuracy[name] = distiller.score(X_test, y_test)
    print(f"{name:9s} {distiller.synthetic_X_.shape}  test accuracy {accuracy[name]:.3f}")

# %%
# The synthetic images
# --------------------
# ``plot_synthetic_images`` draws one row per label. Stacking the five sets and labelling each
# image with its method gives one row per method, the digits 0 to 9 from left to right. Each
# image is rescaled to [0, 1] on its own: learned images have no fixed intensity range.
#
# The four learned methods start from one real image per class and reshape it; herding returns
# real digits unchanged.
names = list(distillers)
images = np.concatenate([distillers[n].synthetic_X_ for n in names])
labels = np.repeat(names, [len(distillers[n].synthetic_X_) for n in names])
fig = plot_synthetic_images(images, labels, classes=names, max_per_class=10,
                            title="One synthetic image per class, digits 0-9")
fig.subplots_adjust(left=0.1)  # room for the longer row labels

# %%
# How well does each set of ten images teach?
# -------------------------------------------
# Mean test accuracy of two networks trained from scratch on each synthetic set (the
# :doc:`evaluation protocol <../evaluation>`). With so few steps the differences are small and
# noisy; the benchmarks page has longer runs on MNIST and CIFAR-10.
fig, ax = plt.subplots(figsize=(6, 2.8), layout="constrained")
ax.barh(names[::-1], [100 * accuracy[n] for n in names[::-1]], color="tab:blue")
for i, n in enumerate(names[::-1]):
    ax.text(100 * accuracy[n] + 0.5, i, f"{100 * accuracy[n]:.1f} %", va="center")
ax.set_xlabel("test accuracy of networks trained on 10 images (%)")
ax.set_xlim(0, 100)
plt.show()
