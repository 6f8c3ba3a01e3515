"""
=============================================
A distiller in a pipeline, with GridSearchCV
=============================================

A distiller is an imbalanced-learn *sampler*: it has ``fit_resample``. In an
``imblearn.pipeline.Pipeline`` the step after it is trained on the distilled rows only, and at
prediction time the distiller is skipped. Here a pipeline standardises digit images given as
2-D rows, distils them with FRePo to one image per class, and trains a logistic regression on
those ten rows. ``GridSearchCV`` then tunes FRePo's model pool: the number of networks
``pool_size`` (the paper's *m*) and the number of online steps ``max_online_steps`` (*K*) after
which a pool member is re-initialised.
"""

# %%
# The pipeline
# ------------
# The images are 2-D rows (64 pixels), as most scikit-learn estimators want them; the
# distiller's ``image_shape`` says how to read them as 8x8x1 images, and it returns its synthetic
# set as rows again.
import matplotlib.pyplot as plt
import numpy as np
from imblearn.pipeline import make_pipeline
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split

from sklearn_distill import (ConvNet, FRePoDistiller, HerdingDistiller, ImageStandardizer,
                             RandomDistiller, load_digits_images)

X, y = load_digits_images(return_X_y=True)
X = X.reshape(len(X), -1)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.4, stratify=y,
                                                    random_state=0)

pipe = make_pipeline(
    ImageStandardizer(image_shape=(8, 8, 1)),
    FRePoDistiller(ipc=1, n_steps=100, learning_rate=1e-2, batch_size=256, pool_size=2,
                   max_online_steps=20, model=ConvNet(width=16, depth=2, norm="batch"),
                   image_shape=(8, 8, 1), log_every=10, random_state=0),
    LogisticRegression(max_iter=1000),
)
pipe.fit(X_train, y_train)
print("pipeline steps:", list(pipe.named_steps))
print("rows the classifier saw:", pipe.named_steps["frepodistiller"].synthetic_X_.shape)
print(f"test accuracy, FRePo (10 rows): {pipe.score(X_test, y_test):.3f}")

# %%
# The same pipeline with a herding coreset in place of FRePo, with random real rows, and without
# any distiller:
for name, sampler in (("herding", HerdingDistiller(ipc=1)),
                      ("random", RandomDistiller(ipc=1, random_state=0))):
    other = make_pipeline(ImageStandardizer(image_shape=(8, 8, 1)), sampler,
                          LogisticRegression(max_iter=1000)).fit(X_train, y_train)
    print(f"test accuracy, {name} (10 rows): {other.score(X_test, y_test):.3f}")
full = make_pipeline(ImageStandardizer(image_shape=(8, 8, 1)),
                     LogisticRegression(max_iter=1000)).fit(X_train, y_train)
print(f"test accuracy, all {len(X_train)} training rows: {full.score(X_test, y_test):.3f}")

# %%
# Column names through the pipeline
# ---------------------------------
# With ``set_output(transform="pandas")`` every transformer of the pipeline returns a DataFrame.
# The distiller keeps the columns: the rows it returns, selected or learned, live in the input's
# feature space, so ``get_feature_names_out`` gives the input names and the classifier is trained
# on named columns.
import pandas as pd

frame_train = pd.DataFrame(X_train, columns=[f"pixel_{i}" for i in range(X.shape[1])])
named = make_pipeline(ImageStandardizer(image_shape=(8, 8, 1)), HerdingDistiller(ipc=1),
                      LogisticRegression(max_iter=1000)).set_output(transform="pandas")
named.fit(frame_train, y_train)
print("names out of the distiller:",
      named.named_steps["herdingdistiller"].get_feature_names_out()[:3])
print("classifier trained on:", named[-1].feature_names_in_[:3])
X_small, y_small = named[:-1].fit_resample(frame_train, pd.Series(y_train, name="digit"))
print(type(X_small).__name__, X_small.shape, "|", type(y_small).__name__, y_small.name)

# %%
# With a *linear* model at the end and one row per class, herding is a strong baseline: it picks
# the real image nearest each class mean, close to what a linear classifier wants. FRePo optimises
# its images, at this tiny budget of 100 meta-steps, for networks of its ConvNet family trained
# on its learned labels, while a pipeline hands the next step only the hard labels
# (``DistilledClassifier`` passes the learned labels on, see the user guide). Which distiller
# suits which downstream model is exactly what a cross-validated search can decide.

# %%
# Grid search over the model pool
# -------------------------------
# Step parameters are addressed as ``<step name>__<parameter>``. Each candidate distils on the
# training folds and is scored by the logistic regression on the validation fold. FRePo's numeric
# hyperparameters are traced by JAX, so the values of ``max_online_steps`` share one compiled
# meta-step; each ``pool_size`` compiles once.
grid = {"frepodistiller__pool_size": [1, 2], "frepodistiller__max_online_steps": [5, 50]}
search = GridSearchCV(pipe, grid, cv=2)
search.fit(X_train, y_train)
print("best:", search.best_params_, f"cv accuracy {search.best_score_:.3f}")
print(f"test accuracy of the refitted best pipeline: {search.score(X_test, y_test):.3f}")

# %%
# Mean validation accuracy of each candidate:
pools, ks = grid["frepodistiller__pool_size"], grid["frepodistiller__max_online_steps"]
scores = np.empty((len(pools), len(ks)))
for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
    scores[pools.index(params["frepodistiller__pool_size"]),
           ks.index(params["frepodistiller__max_online_steps"])] = score
fig, ax = plt.subplots(figsize=(4.5, 3.2), layout="constrained")
image = ax.imshow(100 * scores, cmap="viridis")
ax.set_xticks(range(len(ks)), ks)
ax.set_yticks(range(len(pools)), pools)
ax.set_xlabel("max_online_steps (K)")
ax.set_ylabel("pool_size (m)")
middle = 100 * (scores.min() + scores.max()) / 2
for (i, j), value in np.ndenumerate(100 * scores):
    ax.text(j, i, f"{value:.1f}", ha="center", va="center", color="k" if value > middle else "w")
fig.colorbar(image, ax=ax, label="cv accuracy (%)")
ax.set_title("GridSearchCV over FRePo's model pool")
plt.show()
