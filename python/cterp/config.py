"""SAEConfig: the training config (cterp_train_config) under cterp's field names and mlxterp's."""
import ctypes
import warnings

from . import _lib
from ._lib import CterpError, b, check, lib

# mlxterp SAEConfig name -> cterp field (docs/python.md). Values keep their meaning except where
# noted: None for lr_decay_steps is "all remaining steps" (-1), None for sparsity_warm_up_steps is
# "no warm-up" (0), None for gradient_clip is "no clipping" (0).
MLXTERP_NAMES = {
    "sae_type": "architecture",
    "learning_rate": "lr",
    "lambda_sparse": "l1_coefficient",
    "warmup_steps": "lr_warm_up_steps",
    "gradient_clip": "grad_clip",
    "normalize_input": "normalize_activations",
}
_NONE_MEANS = {"lr_decay_steps": -1, "sparsity_warm_up_steps": 0, "grad_clip": 0}
# mlxterp fields without a cterp counterpart that change nothing in what is trained: accepted
# with a warning. (tied_weights=True and num_epochs are refused: see __init__.)
MLXTERP_IGNORED = {"dead_neuron_threshold", "validation_split", "text_batch_size", "use_wandb",
                   "wandb_project", "wandb_entity", "wandb_name", "wandb_tags"}

# n_matryoshka_widths is the length of matryoshka_widths, which reads and sets as a list
FIELDS = [f for f, _ in _lib.TrainConfig._fields_ if f != "n_matryoshka_widths"]
_ENUMS = {"architecture": ["standard", "topk", "batchtopk", "jumprelu", "matryoshka_batchtopk",
                           "gated", "transcoder", "skip_transcoder", "crosscoder"],
          "lr_scheduler": ["constant", "cosine", "linear"],
          "b_dec_init": ["geometric_median", "mean", "zeros"]}


def _str(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):  # matryoshka_widths
        return ",".join(str(int(w)) for w in v)
    return str(v)


class SAEConfig:
    """Training config. SAEConfig(**fields) starts from cterp's defaults (docs/training.md);
    SAEConfig.mlxterp(**fields) from mlxterp's, SAEConfig.saelens(**fields) from SAELens v6's.
    Fields are cterp's names (architecture, lr, k, batch_size, training_steps, ...) or mlxterp's
    (sae_type, learning_rate, lambda_sparse, warmup_steps, gradient_clip, normalize_input); each
    value is checked by the C library (cterp_train_config_set) and a bad one raises CterpError
    naming the field. Read any field as an attribute (config.lr)."""

    def __init__(self, preset="cterp", **fields):
        self._c = _lib.TrainConfig()
        check(lib.cterp_train_config_preset(ctypes.byref(self._c), b(preset)), "SAEConfig preset")
        self.update(**fields)

    @classmethod
    def mlxterp(cls, **fields):
        return cls("mlxterp", **fields)

    @classmethod
    def saelens(cls, **fields):
        return cls("saelens", **fields)

    @classmethod
    def from_json(cls, path):
        """A JSON object of fields (cterp train --config's format)."""
        c = cls()
        check(lib.cterp_train_config_load_json(ctypes.byref(c._c), b(path)), str(path))
        return c

    def update(self, **fields):
        for name, v in fields.items():
            if name in MLXTERP_IGNORED:
                warnings.warn("SAEConfig: mlxterp's %s has no effect in cterp; ignored" % name)
                continue
            if name == "tied_weights":
                if v:
                    raise CterpError("SAEConfig: tied_weights=True: cterp trains untied encoder "
                                     "and decoder (W_enc starts as W_dec^T)")
                continue
            if name == "num_epochs":
                raise CterpError("SAEConfig: num_epochs: cterp trains for training_steps "
                                 "(or training_tokens) over a stream; give one of those")
            field = MLXTERP_NAMES.get(name, name)
            if v is None:
                if field not in _NONE_MEANS:
                    raise CterpError("SAEConfig: %s: None is not a value of this field" % name)
                v = _NONE_MEANS[field]
            s = check_set(self._c, field, _str(v))
            if s:
                raise s
        return self

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        field = MLXTERP_NAMES.get(name, name)
        if field not in FIELDS:
            raise AttributeError("SAEConfig has no field '%s'" % name)
        v = getattr(self._c, field)
        if field == "matryoshka_widths":
            return list(v[:self._c.n_matryoshka_widths])
        if field in _ENUMS:
            return _ENUMS[field][v]
        return v

    def __setattr__(self, name, value):
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self.update(**{name: value})

    def to_dict(self):
        return {f: getattr(self, f) for f in FIELDS}

    def validate(self, d_in):
        check(lib.cterp_train_config_validate(ctypes.byref(self._c), int(d_in)), "SAEConfig")

    @property
    def steps(self):
        return int(lib.cterp_train_config_steps(ctypes.byref(self._c)))

    def k_at(self, step, d_in):
        """The k the step with index `step` (0-based) uses: k, or its annealed value while
        k_anneal_steps > 0 (k_anneal_start, 0 meaning d_in, falling linearly to k)."""
        return int(lib.cterp_train_config_k_at(ctypes.byref(self._c), int(d_in), int(step)))

    def copy(self):
        c = SAEConfig()
        ctypes.memmove(ctypes.byref(c._c), ctypes.byref(self._c), ctypes.sizeof(self._c))
        return c

    def __repr__(self):
        return "SAEConfig(%s)" % ", ".join("%s=%r" % kv for kv in self.to_dict().items())


def check_set(c, field, value):
    """cterp_train_config_set; returns a CterpError (naming the field) or None."""
    s = lib.cterp_train_config_set(ctypes.byref(c), b(field), b(value))
    if s:
        msg = _lib.last_error()
        lib.cterp_clear_error()
        return CterpError("SAEConfig: " + msg, s)
    return None


def as_config(config):
    if config is None:
        return SAEConfig()
    if isinstance(config, SAEConfig):
        return config
    if isinstance(config, dict):
        return SAEConfig(**config)
    raise CterpError("config: expected an SAEConfig or a dict, got %r" % type(config).__name__)
