"""
=================================
Learned labels: a label heatmap
=================================

FRePo learns the labels of the synthetic images along with the pixels
(``learn_labels=True``, the default). A learned label is a real-valued vector over all classes,
not a one-hot vector: an image of a "7" can say "mostly 7, a bit of 1, not 4", which a network
trained on it with a squared loss picks up. ``plot_label_heatmap`` shows the label matrix
``synthetic_y_soft_``, one row per synthetic image.
"""

# %%
# Distil with learned labels
# --------------------------
# Labels start as centred one-hot vectors; a larger learning rate and a few hundred steps let
# them move visibly within seconds.
import matplotlib.pyplot as plt
import numpy as np

from sklearn_distill import (ConvNet, FRePoDistiller, load_digits_images, plot_label_heatmap,
                             plot_synthetic_images)

X, y = load_digits_images(return_X_y=True)

frepo = FRePoDistiller(ipc=1, n_steps=300, learning_rate=1e-2, batch_size=256, pool_size=2,
                       max_online_steps=20, model=ConvNet(width=16, depth=2, norm="batch"),
                       learn_labels=True, log_every=10, random_state=0)
frepo.fit(X, y)
print("label matrix:", frepo.synthetic_y_soft_.shape)

# %%
# The label matrix
# ----------------
# Rows are the ten synthetic images (one per class, in class order), columns the classes. The
# diagonal holds each image's own class; the off-diagonal entries are what was learned about
# which digits look alike.
fig = plot_label_heatmap(frepo.synthetic_y_soft_, classes=frepo.classes_,
                         title="FRePo's learned labels, digits, ipc 1")

# %%
# Which classes does each image also speak for?
# ---------------------------------------------
# For every synthetic image, the class with the largest learned value after its own.
soft = frepo.synthetic_y_soft_
for row, label in zip(soft, frepo.synthetic_y_):
    others = np.delete(np.arange(len(row)), label)
    runner_up = others[np.argmax(row[others])]
    print(f"image of {label}: own {row[label]:+.3f}, next {runner_up} ({row[runner_up]:+.3f})")

# %%
# The images these labels belong to, digits 0 to 9 from left to right (``plot_synthetic_images``
# draws one row per label; giving every image the same label puts the set in one row):
fig = plot_synthetic_images(frepo.synthetic_X_, np.full(len(frepo.synthetic_X_), "FRePo"),
                            title="FRePo, ipc 1")
plt.show()
