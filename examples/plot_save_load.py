"""
======================================
Saving, loading and sharing a set
======================================

A synthetic set is worth keeping: it took the distillation run to make, and it trains new models
in seconds. ``distiller.save`` (or ``save_synthetic_set``) writes one ``.npz`` file of plain
arrays plus a JSON metadata block; ``load_synthetic_set`` reads it back without unpickling
anything, and any other framework reads it with ``numpy.load``.
"""

# %%
# Distil and save
# ---------------
import json
import os
import tempfile

import numpy as np
from sklearn.model_selection import train_test_split

from sklearn_distill import (ConvNet, FRePoDistiller, NeuralNetClassifier, load_digits_images,
                             load_synthetic_set, plot_synthetic_images, save_synthetic_set)

X, y = load_digits_images(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.4, stratify=y,
                                                    random_state=0)
frepo = FRePoDistiller(ipc=1, n_steps=100, learning_rate=1e-2, batch_size=256, pool_size=2,
                       max_online_steps=20, model=ConvNet(width=16, depth=2, norm="batch"),
                       log_every=10, random_state=0).fit(X_train, y_train)

folder = tempfile.mkdtemp()
path = save_synthetic_set(os.path.join(folder, "digits_frepo_ipc1.npz"), frepo,
                          metadata={"dataset": "sklearn digits, 60 % training split",
                                    "preprocessing": "none (pixels in [0, 1])"})
# The method form does the same: frepo.save(path, metadata={...})
print(os.path.basename(path), f"{os.path.getsize(path)} bytes")

# %%
# Load it back
# ------------
# ``load_synthetic_set`` returns a ``SyntheticSet``: the arrays, the learned labels (``None`` for
# coreset methods), the classes and the metadata: method, every parameter, layout, number of
# steps, library version and the entries given to ``save``.
s = load_synthetic_set(path)
print("X", s.X.shape, s.X.dtype, "| y", s.y, "| soft labels", s.soft_labels.shape)
print(json.dumps({k: s.metadata[k] for k in ("method", "library_version", "layout", "n_iter",
                                             "dataset", "preprocessing")}, indent=1))
print("learning_rate:", s.metadata["parameters"]["learning_rate"])

# One row (all ten images under one label), digits 0 to 9 from left to right:
fig = plot_synthetic_images(s.X, np.full(len(s.X), "loaded"),
                            title="loaded from digits_frepo_ipc1.npz")

# %%
# Train a new model on the loaded set
# -----------------------------------
# The loaded arrays are all a model needs: here a network trained from scratch with a squared
# loss against the learned labels, as the evaluation protocol does.
net = NeuralNetClassifier(ConvNet(width=16, depth=2), n_steps=200, random_state=0)
net.fit(s.X, s.y, soft_labels=s.soft_labels)
print(f"test accuracy of a network trained on the 10 loaded images: {net.score(X_test, y_test):.3f}")

# %%
# Another framework: just NumPy
# -----------------------------
# The file is an ordinary ``.npz``: ``X`` (images NHWC, channels last, as given to ``fit``),
# ``y`` (hard labels), ``classes``, ``y_soft`` (learned labels, columns in the order of
# ``classes``) and ``metadata`` (a JSON string).
with np.load(path, allow_pickle=False) as f:
    print(f.files)
    X_np, y_soft_np = f["X"], f["y_soft"]
    metadata = json.loads(str(f["metadata"]))
print(X_np.shape, y_soft_np.shape, metadata["method"])

# %%
# In PyTorch, which wants NCHW images, the same file becomes a training set like this (not run
# here: PyTorch is not a dependency of the package):
#
# .. code-block:: python
#
#     import numpy as np
#     import torch
#
#     with np.load("digits_frepo_ipc1.npz", allow_pickle=False) as f:
#         X = torch.from_numpy(f["X"]).permute(0, 3, 1, 2).contiguous()   # NHWC -> NCHW
#         y_soft = torch.from_numpy(f["y_soft"])                           # learned labels
#     dataset = torch.utils.data.TensorDataset(X, y_soft)
#     # ... train with torch.nn.functional.mse_loss(model(xb), yb)
#
# Data the trained model sees later must get the preprocessing the distiller saw (recorded above
# under ``"preprocessing"``).
