"""
=========================================
Accuracy against distillation wall time
=========================================

Methods differ in what a meta-step costs: FRePo only runs the real batch forward through one
network, RCIG also solves an inner problem and differentiates through it implicitly, RaT-BPTT
unrolls inner training. Step counts therefore compare badly; accuracy **against wall time** is
what a user pays for. This example shows

1. the meta-loss of a distillation run against wall time, from ``history_``, with
   ``plot_learning_curve``;
2. accuracy against distillation time on the digits, measured here with tiny runs of increasing
   length;
3. the same on MNIST, read from the committed benchmark results in ``benchmarks/results/``.
"""

# sphinx_gallery_thumbnail_number = 2

# %%
# The loss curve of one run
# -------------------------
# Every distiller logs ``step``, ``time`` (seconds since the run started) and ``loss`` every
# ``log_every`` steps in ``history_``.
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
from sklearn.model_selection import train_test_split

from sklearn_distill import (ConvNet, FRePoDistiller, ImageStandardizer, KRRDistiller,
                             RCIGDistiller, load_digits_images, plot_learning_curve)

X, y = load_digits_images(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.4, stratify=y,
                                                    random_state=0)
scaler = ImageStandardizer().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
# Every method scored under the same, library evaluation protocol (a short run here).
evaluation = dict(n_eval_models=2, eval_steps=200, eval_model=ConvNet(width=16, depth=2),
                  eval_protocol="library", random_state=0)


def make(method, n_steps):
    """The three learned methods with the tiny settings of the other examples."""
    if method == "FRePo":
        return FRePoDistiller(ipc=1, n_steps=n_steps, learning_rate=1e-2, batch_size=256,
                              pool_size=2, max_online_steps=20, log_every=10,
                              model=ConvNet(width=16, depth=2, norm="batch"), **evaluation)
    if method == "RCIG":
        return RCIGDistiller(ipc=1, n_steps=n_steps, learning_rate=1e-2, batch_size=256,
                             pool_size=2, max_online_steps=20, online_steps=1,
                             online_learning_rate=1e-3, n_inner=2, n_hinv=2, log_every=10,
                             model=ConvNet(width=16, depth=2, activation="softplus"),
                             **evaluation)
    return KRRDistiller(ipc=1, n_steps=n_steps, batch_size=256, log_every=10,
                        model=ConvNet(width=16, depth=2), **evaluation)


# A first short fit of each method compiles its meta-step, so the timings below measure
# distillation, not compilation.
for method in ("FRePo", "RCIG", "KRR"):
    make(method, 10).fit(X_train, y_train)

frepo = make("FRePo", 200).fit(X_train, y_train)
fig = plot_learning_curve(frepo.history_, x="time", y="loss",
                          title="FRePo meta-loss against wall time (digits, ipc 1)")

# %%
# Accuracy against distillation time on the digits
# ------------------------------------------------
# Runs of 10, 50 and 200 meta-steps per method; each point is the wall time of the whole ``fit``
# (set-up included: RCIG spends one to two seconds of every fit before its first step on
# this machine) and the mean test accuracy of two networks trained from scratch on its ten images.
# All three methods start from one random real image per class.
curves = {}
for method in ("FRePo", "RCIG", "KRR"):
    points = []
    for n_steps in (10, 50, 200):
        distiller = make(method, n_steps)
        start = time.perf_counter()
        distiller.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        points.append((seconds, 100 * distiller.score(X_test, y_test)))
    curves[method] = points
    print(method, [f"{s:.1f} s: {a:.1f} %" for s, a in points])

fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
for method, points in curves.items():
    seconds, acc = zip(*points)
    ax.plot(seconds, acc, marker="o", label=method)
ax.set_xlabel("distillation wall time (s)")
ax.set_ylabel("test accuracy (%)")
ax.set_title("Digits, ipc 1, ConvNet width 16 (this machine)")
ax.grid(True, alpha=0.3)
ax.legend()

# %%
# Accuracy against wall time on MNIST, from the committed benchmarks
# ------------------------------------------------------------------
# ``benchmarks/results/*.json`` hold every number of the benchmark runs together with the
# machine they ran on (a shared 2-core CPU, ConvNet width 16 with width doubling, ipc 1). The
# points come from three scripts with their own evaluation settings (RaT-BPTT's networks trained
# for 500 steps, the others for 1000), so they show the trend rather than a controlled
# comparison.
try:
    examples = Path(__file__).resolve().parent
except NameError:  # the documentation build runs the script from its own folder
    examples = Path.cwd()
results = examples.parent / "benchmarks" / "results"


def load(name):
    with open(results / f"{name}.json") as f:
        return json.load(f)


frepo_short = load("frepo_mnist_w16_ipc1")["results"][0]
same_budget = load("rcig_mnist_w16_ipc1")  # RCIG and FRePo, each 420 s of wall time
rcig_row = same_budget["results"][0]
ratbptt_row = load("ratbptt_mnist_w16_ipc1_ipc10")["results"][0]
print("ran on:", same_budget["machine"]["cpu_model"], same_budget["machine"]["cpu_count"], "cores,",
      "JAX", same_budget["machine"]["jax_version"])

fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
ax.plot([frepo_short["distill_seconds"], rcig_row["frepo_seconds"]],
        [frepo_short["frepo_acc_mean"], rcig_row["frepo_acc_mean"]], marker="o",
        label=f"FRePo ({frepo_short['steps']} and {rcig_row['frepo_steps']} steps)")
ax.plot([rcig_row["rcig_seconds"]], [rcig_row["rcig_acc_mean"]], marker="s", linestyle="none",
        label=f"RCIG ({rcig_row['rcig_steps']} steps)")
ax.plot([ratbptt_row["distill_seconds"]], [ratbptt_row["ratbptt_acc_mean"]], marker="^",
        linestyle="none", label=f"RaT-BPTT ({ratbptt_row['steps']} steps)")
ax.axhline(rcig_row["random_acc_mean"], color="grey", linestyle="--",
           label="random real images")
ax.set_xlabel("distillation wall time (s)")
ax.set_ylabel("test accuracy (%)")
ax.set_title("MNIST, ipc 1 (committed results, 2-core CPU)")
ax.set_ylim(0, 100)
ax.grid(True, alpha=0.3)
ax.legend(loc="lower right", fontsize="small")
plt.show()
