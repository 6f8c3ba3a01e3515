"""Stage 3 of the translator and the estimator, :class:`TranslatorDistiller`."""

import os
from numbers import Integral, Real

import jax
import numpy as np
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from ..._sharding import data_parallel
from ..._training import centred_one_hot
from ...base import BaseDistiller, DistillationResult
from ...networks import features, with_num_classes
from ..krr import KRR_CONSTRAINTS, single_network_distillation, default_random_network
from .cache import pad_bank
from .network import PretrainedTranslator, Translator
from .pretraining import train_translator

__all__ = ["TranslatorDistiller"]


class TranslatorDistiller(BaseDistiller):
    r"""Few-shot dataset distillation with a (pre-trained) translator.

    ``fit`` (i) distils ``ipc`` samples per class in *one* network (:class:`KRRDistiller`
    with :math:`R = 1`, ``n_steps`` steps: fast, since the real rows pass through one network
    once), (ii) optionally adapts the translator to the data, and (iii) returns the translator's
    output on that set; the labels are those of the single-network distillation. As in Liu &
    Wang's Alg. 3, that one network is the fixed network the translator was pre-trained on
    (``translator.distillation_network``, recorded by :func:`pretrain_translator`): the
    translator has learned what distilling in *that* network does to images, not in another.

    Adaptation (stage 3, ``adapt_steps > 0``): single-network distillations of the data at each
    ipc of ``adapt_ipc`` are made, and the translator takes ``adapt_steps`` Adam steps so that its
    outputs, fed to KRR in freshly sampled random networks, predict random batches of the real
    data. The adapted translator (``translator_``) then serves any ipc, also ones it was not
    adapted at: pass it as ``translator=`` with ``adapt_steps=0``.

    Parameters
    ----------
    ipc : int, default=1
    translator : PretrainedTranslator, Translator, str, path-like or None, default=None
        A pre-trained translator (:func:`pretrain_translator`, or a fitted ``translator_``), the
        path of a saved one, or an architecture to start untrained (the identity; ``None``:
        ``Translator()``).
    n_steps : int, default=100
        Steps of each single-network distillation (match the cache's ``n_steps``).
    learning_rate : float, default=0.01
        Adam rate of the single-network distillations.
    batch_size : int, default=1024
        Real rows per single-network distillation, and per adaptation step.
    learn_labels : bool, default=True
    model : flax.linen.Module or None, default=None
        Random-network family (see :class:`KRRDistiller`).
    ridge : float, default=1e-6
    precision : {"highest", "high", "default"}, default="highest"
    adapt_ipc : tuple of int or None, default=None
        The ipc values of the adaptation distillations; ``None``: ``(ipc,)``.
    adapt_steps : int, default=100
        Translator steps on the data; 0 skips adaptation.
    adapt_learning_rate : float, default=1e-3
        Adam rate of the translator during adaptation.
    distillation_network : {"translator", "random"}, default="translator"
        The network of the single-network distillations (the target's and the adaptation
        sets'): "translator" is the pre-trained translator's ``distillation_network`` (a random
        one drawn from ``random_state`` when it has none: an untrained translator, or a file
        saved before it was recorded); "random" always draws a new random network. With
        "translator" and ``model=None``, the random-network family is the translator's.
    image_shape : tuple or None, default=None
    n_eval_models : int, default=5
    eval_steps : int or "auto", default="auto"
    eval_model : flax.linen.Module or None, default=None
    eval_protocol : str or EvalProtocol, default="library"
        Evaluation protocol of :meth:`score`: "library", "frepo", "rcig", "ratbptt", "dc"
        (:func:`~sklearn_distill.get_protocol`) or an :class:`~sklearn_distill.EvalProtocol`;
        the default is the library's (the translator paper publishes no evaluation code).
    log_every : int, default=100
    devices : int, list of jax.Device or None, default=None
        ``None``: the default device. An int ``k`` (the first ``k`` devices) or a list of devices:
        the real batch is sharded over them (the synthetic set and networks are replicated), and
        ``batch_size`` is rounded down to a multiple of their number.
    verbose : int, default=0
    random_state : int, RandomState instance or None, default=None

    Attributes
    ----------
    synthetic_X_, synthetic_y_, synthetic_y_soft_, classes_, sampling_strategy_, n_features_in_ :
        See :class:`~sklearn_distill.base.BaseDistiller`.
    single_network_X_ : ndarray
        The single-network distillation before translation (same layout as ``synthetic_X_``).
    translator_ : PretrainedTranslator
        The translator used (after adaptation); NumPy arrays only.
    adaptation_ : dict or None
        Adaptation record: steps, seconds, loss history, loss on fixed draws before and after.
    n_iter_ : int
        Steps of the single-network distillation.
    history_ : dict of list
        Its loss history.
    stop_reason_ : str

    See Also
    --------
    TranslatorCache, pretrain_translator : stages 1 and 2.
    KRRDistiller : the baseline.

    References
    ----------
    .. [1] S. Liu and X. Wang, "Few-Shot Dataset Distillation via Translative Pre-Training",
       ICCV 2023.

    Examples
    --------
    >>> from sklearn_distill import ConvNet, Translator, TranslatorDistiller, load_digits_images
    >>> X, y = load_digits_images(return_X_y=True)
    >>> td = TranslatorDistiller(ipc=1, translator=Translator(width=4, depth=1), n_steps=5,
    ...                          batch_size=200, adapt_steps=3, model=ConvNet(width=8, depth=2),
    ...                          random_state=0).fit(X, y)
    >>> td.synthetic_X_.shape, td.translator_.metadata["trained_steps"]
    ((10, 8, 8, 1), 3)
    """

    _parameter_constraints = {
        **BaseDistiller._parameter_constraints,
        **KRR_CONSTRAINTS,
        "translator": [None, str, os.PathLike, HasMethods(["translate", "save"]),
                       HasMethods(["init", "apply"])],
        "adapt_ipc": [tuple, list, None],
        "adapt_steps": [Interval(Integral, 0, None, closed="left")],
        "adapt_learning_rate": [Interval(Real, 0, None, closed="neither")],
        "distillation_network": [StrOptions({"translator", "random"})],
    }

    def __init__(self, ipc=1, *, translator=None, n_steps=100, learning_rate=0.01, batch_size=1024,
                 learn_labels=True, model=None, ridge=1e-6, precision="highest", adapt_ipc=None,
                 adapt_steps=100, adapt_learning_rate=1e-3, image_shape=None, n_eval_models=5,
                 eval_steps="auto", eval_model=None, log_every=100, devices=None, verbose=0,
                 eval_protocol="library", distillation_network="translator",
                 random_state=None):
        self.ipc = ipc
        self.translator = translator
        self.n_steps = n_steps
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.learn_labels = learn_labels
        self.model = model
        self.ridge = ridge
        self.precision = precision
        self.adapt_ipc = adapt_ipc
        self.adapt_steps = adapt_steps
        self.adapt_learning_rate = adapt_learning_rate
        self.image_shape = image_shape
        self.n_eval_models = n_eval_models
        self.eval_steps = eval_steps
        self.eval_model = eval_model
        self.eval_protocol = eval_protocol
        self.distillation_network = distillation_network
        self.log_every = log_every
        self.devices = devices
        self.verbose = verbose
        self.random_state = random_state

    def _resolve_translator(self, channels, key):
        t = self.translator
        if t is None or isinstance(t, Translator):
            seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
            t = PretrainedTranslator.identity(t, channels, seed)
        elif isinstance(t, (str, os.PathLike)):
            t = PretrainedTranslator.load(t)
        elif isinstance(t, PretrainedTranslator):
            t = t.copy()
        else:
            raise ValueError(f"`translator` must be None, a Translator, a PretrainedTranslator or the "
                             f"path of a saved one; got {t!r}.")
        t.check_channels(channels)
        return t

    def _adapt_ipcs(self, y):
        ipcs = (self.ipc,) if self.adapt_ipc is None else tuple(self.adapt_ipc)
        if not ipcs or any(isinstance(a, bool) or not isinstance(a, Integral) or a < 1 for a in ipcs):
            raise ValueError(f"`adapt_ipc` must be None or a non-empty list of positive integers; got "
                             f"{self.adapt_ipc!r}.")
        smallest = int(np.bincount(y).min())
        if max(ipcs) > smallest:
            raise ValueError(f"`adapt_ipc`={list(ipcs)} asks for {max(ipcs)} samples per class but the "
                             f"smallest class has {smallest} rows.")
        return ipcs

    def _fixed_network(self, translator, sample_shape):
        """The translator's distillation network ``(model, variables)``, or ``(None, None)``."""
        if self.distillation_network == "random" or translator.distillation_network is None:
            return None, None
        net_model, variables = translator.distillation_network
        probe = jax.ShapeDtypeStruct((1,) + tuple(sample_shape), np.float32)
        try:  # only the feature layers matter (a ConvNet's feature layers work at any resolution)
            jax.eval_shape(lambda x: features(net_model, variables, x), probe)
        except Exception as exc:
            raise ValueError(f"`translator`'s distillation network cannot take samples of shape "
                             f"{tuple(sample_shape)} ({type(exc).__name__}); use "
                             f"distillation_network='random'.") from None
        return net_model, variables

    def _distill(self, X, y, key):
        n_classes = len(self.classes_)
        channels = X.shape[-1]
        ipcs = self._adapt_ipcs(y) if self.adapt_steps > 0 else ()
        single_key, adapt_key, translator_key = jax.random.split(key, 3)
        translator = self._resolve_translator(channels, translator_key)
        net_model, fixed = self._fixed_network(translator, X.shape[1:])
        family = (self.model if self.model is not None
                  else net_model if net_model is not None
                  else default_random_network(X.shape[1:]))
        model = with_num_classes(family, n_classes)
        common = dict(n_steps=self.n_steps, batch_size=self.batch_size,
                      learning_rate=self.learning_rate, ridge=self.ridge,
                      learn_labels=self.learn_labels, precision=self.precision,
                      placement=data_parallel(self.devices),
                      model=model if fixed is None else net_model, fixed_variables=fixed)
        x1, y1, labels1, result = single_network_distillation(
            X, y, n_classes, self.ipc, single_key, log_every=self.log_every, verbose=self.verbose,
            **common)
        self.adaptation_ = None
        if ipcs:
            xs, labs = [], []
            for a in ipcs:
                if a == self.ipc:
                    xa, la = x1, labels1
                else:
                    xa, _, la, _ = single_network_distillation(
                        X, y, n_classes, a, jax.random.fold_in(adapt_key, a),
                        log_every=max(1, self.n_steps), **common)
                xs.append(xa)
                labs.append(la)
            bank = pad_bank(xs, labs, n_classes * max(ipcs), n_classes)
            translator, record = train_translator(
                translator, bank, X, centred_one_hot(y, n_classes), jax.random.fold_in(adapt_key, 0),
                model=model, n_steps=self.adapt_steps, learning_rate=self.adapt_learning_rate,
                ridge=self.ridge, tasks_per_step=1, fresh_rows=True, batch_size=self.batch_size,
                precision=self.precision, n_eval=2 * len(ipcs), log_every=self.log_every,
                verbose=self.verbose, description="adapting translator",
                placement=common["placement"])
            record["adapt_ipc"] = list(ipcs)
            translator.metadata.setdefault("adaptation", []).append(
                {k: v for k, v in record.items() if k != "history"})
            self.adaptation_ = record
        x_out = translator.translate(x1)
        self.translator_ = translator
        self.single_network_X_ = self.layout_.to_input(x1)
        self.stop_reason_ = result.stop_reason
        return DistillationResult(X=x_out, y=y1, soft_labels=labels1, n_iter=result.step,
                                  history=result.history)
