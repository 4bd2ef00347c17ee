"""cterp.features / cterp.dashboard: the same files as `cterp features` and `cterp dashboard`."""
import ctypes
import os

from . import _lib
from ._lib import CterpError, b, check, lib
from .sae import as_sae

_FEATURE_OPTS = {"windows": "n_windows", "top": "top_n", "top_n": "top_n",
                 "quantile_k": "quantile_k", "ctx_left": "ctx_left", "ctx_right": "ctx_right",
                 "logits": "n_logits", "n_logits": "n_logits", "seed": "seed",
                 "model_batch": "batch", "batch": "batch", "loss_windows": "loss_windows",
                 "loss_top": "loss_top", "neighbours": "n_neighbours",
                 "n_neighbours": "n_neighbours", "cofire_max_latents": "cofire_max_latents",
                 "view_windows": "view_windows"}


def _collect(model, sae, data, hook=None, context_size=None, **opts):
    from .model import InterpretableModel
    own = not isinstance(model, InterpretableModel)
    m = InterpretableModel(model) if own else model
    sae_dir = sae if isinstance(sae, (str, os.PathLike)) else getattr(sae, "path", None) or ""
    sae = as_sae(sae)
    fc = _lib.FeaturesConfig()
    lib.cterp_features_config_default(ctypes.byref(fc))
    for k, v in opts.items():
        if k not in _FEATURE_OPTS:
            raise CterpError("features: unknown option '%s' (options: %s)" %
                             (k, ", ".join(sorted(_FEATURE_OPTS))))
        setattr(fc, _FEATURE_OPTS[k], int(v))
    if context_size is None:  # as the CLI: the SAE's training context, else 128
        context_size = sae._s.meta.context_size if sae._s.meta.context_size > 0 else 128
    fc.windows.context_size = int(context_size)
    hook_b = b(m.hook_name(None, hook)) if hook else None
    fc.hook = hook_b
    F = ctypes.c_void_p()
    check(lib.cterp_features_collect(m._m, sae._ptr, b(data), ctypes.byref(fc),
                                     b(os.path.basename(m.path)), b(sae_dir), ctypes.byref(F)),
          "features")
    return F, sae_dir


def features(model, sae, data, out, hook=None, context_size=None, **opts):
    """Per-latent statistics, examples and logit effects over a dataset, written to
    out/features.json and out/latents.jsonl (cterp_features_collect + cterp_features_save; the
    same files as `cterp features --model M --sae DIR --data D --out DIR`). model: an
    InterpretableModel or a GGUF path; sae: an SAE or its directory. Options: windows, top,
    quantile_k, ctx_left, ctx_right, logits, seed, model_batch, loss_windows, loss_top,
    neighbours, cofire_max_latents, view_windows (the CLI's flags)."""
    F, _ = _collect(model, sae, data, hook, context_size, **opts)
    try:
        check(lib.cterp_features_save(F, b(out)), os.fspath(out))
    finally:
        lib.cterp_features_free(F)
    return os.fspath(out)


def dashboard(out, model=None, sae=None, data=None, features_dir=None, metrics=None, title=None,
              hook=None, context_size=None, **opts):
    """HTML dashboard: out/index.html, out/f/I.html and (with a metrics.jsonl, by default the
    SAE directory's) out/training.html (cterp_dashboard_write), from a features directory
    (features_dir=) or computed here from model, sae and data (kept in out/features/), as
    `cterp dashboard`. Returns the path of index.html."""
    if features_dir is not None and (model is not None or sae is not None):
        raise CterpError("dashboard: give features_dir, or model, sae and data, not both")
    F = ctypes.c_void_p()
    if features_dir is not None:
        check(lib.cterp_features_load(b(features_dir), ctypes.byref(F)), os.fspath(features_dir))
    else:
        if model is None or sae is None or data is None:
            raise CterpError("dashboard: give features_dir, or model, sae and data")
        F, sae_dir = _collect(model, sae, data, hook, context_size, **opts)
        if metrics is None and sae_dir:
            p = os.path.join(sae_dir, "metrics.jsonl")
            metrics = p if os.path.exists(p) else None
    try:
        if features_dir is None:
            fd = os.path.join(os.fspath(out), "features")
            check(lib.cterp_features_save(F, b(fd)), fd)
        o = _lib.DashboardOpts(b(title), b(metrics))
        check(lib.cterp_dashboard_write(F, b(out), ctypes.byref(o)), os.fspath(out))
    finally:
        lib.cterp_features_free(F)
    return os.path.join(os.fspath(out), "index.html")
