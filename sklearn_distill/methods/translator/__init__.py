r"""Few-shot dataset distillation by translative pre-training.

Liu & Wang, "Few-Shot Dataset Distillation via Translative Pre-Training", ICCV 2023.

The fast baseline is a kernel ridge regression distillation in *one* random network
(:class:`~sklearn_distill.KRRDistiller` with ``n_networks=1``, :mod:`sklearn_distill.methods.krr`);
it over-fits that network. **The translator** (:class:`TranslatorDistiller`) closes that gap: a
small fully convolutional, residual image-to-image network :math:`G` (:class:`Translator`) maps the fast single-network result
to a set that does well in *other* random networks. Three stages, each usable on its own:

1. caching (:class:`TranslatorCache`): many random sub-tasks of a source dataset (a random number
   of classes :math:`C`, a random ipc, :math:`M` real rows) are distilled in one fixed random
   network, in parallel through joblib, and stored on disk;
2. pre-training (:func:`pretrain_translator`): :math:`G` is trained so that its outputs, fed to
   KRR in freshly sampled random networks, predict the real rows of the cached sub-tasks;
3. adaptation (``TranslatorDistiller(adapt_steps=...)``): a few steps of the same objective on
   single-network distillations of the *target* dataset at a list of ipc values; after that,
   :math:`G` turns a single-network distillation at any ipc into the final synthetic set. The
   target is distilled in the cache's fixed network, which the pre-trained translator carries
   (``PretrainedTranslator.distillation_network``), as in the paper's Alg. 3.

A (pre-)trained translator is a :class:`PretrainedTranslator`: parameters as NumPy arrays, saved
to one ``.npz`` file with a JSON metadata block (no pickle). Being fully convolutional, it applies
to images of any resolution with the same number of channels.

The modules: ``network`` (the translator and its saved form), ``cache`` (stage 1),
``pretraining`` (stage 2, and the training step adaptation shares) and ``distiller`` (stage 3 and
:class:`TranslatorDistiller`). Every step is one jitted function; the cached sub-tasks are
zero-padded to one shape with a mask (see :func:`~sklearn_distill.methods.krr.masked_krr_loss`),
so one compilation serves every sub-task.
"""

from ..krr import KRRDistiller  # the baseline; importable from here as before
from .cache import CachedTask, TranslatorCache
from .distiller import TranslatorDistiller
from .network import PretrainedTranslator, Translator
from .pretraining import pretrain_translator

__all__ = ["KRRDistiller", "TranslatorDistiller", "Translator", "PretrainedTranslator",
           "TranslatorCache", "CachedTask", "pretrain_translator"]
