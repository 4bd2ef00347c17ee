"""mlxterp-like InterpretableModel over a GGUF model (cterp_model): trace, train_sae, SAE analysis,
generation with steering."""
import ctypes
import html
import os
import re
import tempfile
import weakref

import numpy as np

from . import _lib
from ._lib import CterpError, b, check, lib
from .config import SAEConfig, as_config
from .sae import SAE, as_sae
from .train import run_trainer

# mlxterp's component names that cterp spells differently
_COMPONENTS = {"residual": "resid_post", "resid": "resid_post", "attention": "attn"}

# mlxterp (mlx-lm module paths) -> TransformerLens names, where one maps to the other one to one
_ALIAS_LAYER = {
    "": "hook_resid_post",  # the layer's output
    "mlp": "hook_mlp_out",
    "mlp.down_proj": "hook_mlp_out",
    "self_attn": "hook_attn_out",
    "self_attn.o_proj": "hook_attn_out",
    "input_layernorm": "ln1.hook_normalized",
    "post_attention_layernorm": "ln2.hook_normalized",
}
_ALIAS_TOP = {"embed_tokens": "hook_embed", "norm": "ln_final.hook_normalized"}
_ALIAS_RE = re.compile(r"^(?:model\.)*(?:layers\.(\d+)(?:\.(.*))?|(embed_tokens|norm))$")


def hook_alias(name):
    """TransformerLens name of an mlxterp activation name ("model.model.layers.3.mlp" ->
    "blocks.3.hook_mlp_out"), or the name unchanged."""
    m = _ALIAS_RE.match(name)
    if not m:
        return name
    if m.group(3):
        return _ALIAS_TOP[m.group(3)]
    sub = m.group(2) or ""
    if sub not in _ALIAS_LAYER:
        return name
    return "blocks.%s.%s" % (m.group(1), _ALIAS_LAYER[sub])


def _dataset_file(dataset):
    """(path, tmp): a dataset path as given, or a list of texts written one document a line to a
    temporary .txt (tmp, for the caller to remove; None otherwise)."""
    if not isinstance(dataset, (list, tuple)):
        return os.fspath(dataset), None
    fd, tmp = tempfile.mkstemp(suffix=".txt", prefix="cterp_texts_")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for t in dataset:  # one document per line
            f.write(" ".join(str(t).splitlines()) + "\n")
    return tmp, tmp


def _store_config(cfg, context_size, buffer_rows, model_batch):
    """The activation store's settings for training `cfg` (as the CLI's --context-size,
    --buffer-rows, --model-batch; the store's seed and rows from the config)."""
    sc = _lib.StoreConfig()
    lib.cterp_store_config_default(ctypes.byref(sc))
    sc.windows.context_size = int(context_size)
    sc.buffer_rows = int(buffer_rows)
    sc.model_batch = int(model_batch)
    sc.seed = cfg.seed
    sc.run_rows = lib.cterp_train_rows_needed(ctypes.byref(cfg._c))
    return sc


class Activations(dict):
    """Hook name -> numpy array, keyed by TransformerLens names; mlxterp's dotted names
    (model.model.layers.L.mlp, layers.L.self_attn, ...) are accepted as aliases."""

    def __getitem__(self, k):
        if not dict.__contains__(self, k):
            a = hook_alias(k)
            if dict.__contains__(self, a):
                return dict.__getitem__(self, a)
            raise KeyError("%s: not captured (captured: %s)" % (k, ", ".join(list(self)[:8]) +
                                                                (", ..." if len(self) > 8 else "")))
        return dict.__getitem__(self, k)

    def __contains__(self, k):
        return dict.__contains__(self, k) or dict.__contains__(self, hook_alias(k))

    def get(self, k, default=None):
        return self[k] if k in self else default


class Trace:
    """What model.trace(...) captured: activations (hook -> (B, T, ...) arrays), logits (B, T, V),
    tokens (B, T) and lengths (B): texts of different lengths are right-padded, positions past a
    text's length are padding (the model is causal: they change nothing before them)."""

    def __init__(self, model, texts, hooks):
        self.model = model
        self.texts = texts
        self.activations = Activations()
        ids = [model.encode(t) for t in texts]
        if any(len(i) == 0 for i in ids):
            raise CterpError("trace: a text gave no tokens")
        self.lengths = np.array([len(i) for i in ids], dtype=np.int64)
        B, T = len(ids), int(self.lengths.max())
        tok = np.zeros((B, T), dtype=np.int32)
        for r, i in enumerate(ids):
            tok[r, :len(i)] = i
        self.tokens = tok
        names = model.hook_points if hooks is None else [hook_alias(h) for h in hooks]
        self.logits = np.empty((B, T, model.config["n_vocab"]), dtype=np.float32)
        model._forward(tok, names, self._capture, self.logits)

    def _capture(self, name, arr):
        self.activations[name] = arr.copy()

    @property
    def output(self):  # mlxterp's model.output: the logits
        return self.logits

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class FeatureActivations:
    """Per-token latent activations of one text (model.visualize_feature_activations): tokens
    (display strings), acts (T, d_sae); _repr_html_ shades each token by the chosen latent."""

    def __init__(self, tokens, acts, feature=None, title=""):
        self.tokens, self.acts, self.feature, self.title = tokens, acts, feature, title

    def _repr_html_(self):
        feats = [self.feature] if self.feature is not None else sorted(
            set(int(i) for i in self.acts.argmax(axis=1) if self.acts.max() > 0))[:8]
        parts = ["<div style='font-family:monospace'>"]
        if self.title:
            parts.append("<div><b>%s</b></div>" % html.escape(self.title))
        for f in feats:
            col = self.acts[:, f]
            hi = float(col.max()) if col.max() > 0 else 1.0
            parts.append("<div>latent %d (max %.3g): " % (f, float(col.max())))
            for t, a in zip(self.tokens, col):
                alpha = max(0.0, float(a)) / hi
                parts.append("<span title='%.4g' style='background:rgba(255,120,0,%.2f);"
                             "white-space:pre'>%s</span>" % (a, alpha, html.escape(t)))
            parts.append("</div>")
        parts.append("</div>")
        return "".join(parts)

    def __repr__(self):
        return "FeatureActivations(%d tokens, %d latents)" % self.acts.shape


class InterpretableModel:
    """A GGUF language model (cterp_model_open; weights mmapped) with TransformerLens hook points
    and mlxterp's interface."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._m = ctypes.c_void_p()
        check(lib.cterp_model_open(ctypes.byref(self._m), b(self.path)), self.path)
        self._fin = weakref.finalize(self, lib.cterp_model_free, self._m)
        c = lib.cterp_model_config_of(self._m).contents
        self.config = {f: (getattr(c, f).decode() if f == "arch" else getattr(c, f))
                       for f, _ in _lib.ModelConfig._fields_}
        self._tok = lib.cterp_model_tokenizer(self._m)
        buf = ctypes.create_string_buffer(256)
        self.hook_points = [lib.cterp_model_hook_point(self._m, i, buf, 256).decode()
                            for i in range(lib.cterp_model_n_hook_points(self._m))]

    def close(self):
        self._fin()

    @property
    def n_layers(self):
        return self.config["n_layers"]

    def __repr__(self):
        return "InterpretableModel(%s: %s, %d layers, d_model %d)" % (
            os.path.basename(self.path), self.config["arch"], self.n_layers,
            self.config["d_model"])

    # ---- tokens -------------------------------------------------------------------------------
    def _need_tok(self):
        if not self._tok:
            raise CterpError("%s has no tokenizer" % self.path)

    def encode(self, text, add_bos=True):
        """Token ids of text (BOS as the vocabulary says): cterp_tokenize."""
        self._need_tok()
        raw = text.encode("utf-8")
        ids = ctypes.POINTER(ctypes.c_int32)()
        n = ctypes.c_size_t()
        check(lib.cterp_tokenize(self._tok, raw, len(raw), int(add_bos), 0, ctypes.byref(ids),
                                 ctypes.byref(n)), "tokenize")
        try:
            return [ids[i] for i in range(n.value)]
        finally:
            _lib.c_free(ids)

    def decode(self, ids):
        """Text of token ids (BOS/EOS dropped): cterp_detokenize."""
        self._need_tok()
        a = np.ascontiguousarray(ids, dtype=np.int32)
        p = ctypes.c_void_p()
        n = ctypes.c_size_t()
        check(lib.cterp_detokenize(self._tok, a.ctypes.data, a.size, 0, ctypes.byref(p),
                                   ctypes.byref(n)), "detokenize")
        try:
            return ctypes.string_at(p, n.value).decode("utf-8", "replace")
        finally:
            _lib.c_free(p)

    def token_str(self, i):
        """Display form of one token (cterp_token_display)."""
        buf = ctypes.create_string_buffer(512)
        return lib.cterp_token_display(self._tok, int(i), buf, 512).decode("utf-8", "replace")

    # ---- hooks --------------------------------------------------------------------------------
    def hook_name(self, layer, component="mlp"):
        """TransformerLens name of a component at a layer (cterp_hook_name), or a hook name /
        mlxterp alias as given; CterpError when the model has no such hook."""
        comp = _COMPONENTS.get(component, component)
        buf = ctypes.create_string_buffer(256)
        if "." in comp:
            name = hook_alias(comp)
        else:
            check(lib.cterp_hook_name(int(layer if layer is not None else 0), b(comp), buf, 256),
                  "component")
            name = buf.value.decode()
        lay, dim = ctypes.c_int(), ctypes.c_int()
        check(lib.cterp_model_hook_info(self._m, b(name), ctypes.byref(lay), ctypes.byref(dim)),
              "layer %s" % layer if layer is not None else name)
        return name

    def _forward(self, tokens, names, on_act, logits=None, extra_hooks=()):
        """cterp_model_forward over tokens (B, T) with a capturing hook at each name."""
        tokens = np.ascontiguousarray(tokens, dtype=np.int32)
        err = []

        def fn(name, act, shape, ndim, user):
            try:
                shp = tuple(shape[i] for i in range(ndim))
                on_act(name.decode(), np.ctypeslib.as_array(act, shp))
                return 0
            except BaseException as e:  # an exception cannot cross the C frames: stop the forward
                err.append(e)
                return 1

        cfn = _lib.HOOK_FN(fn)
        hooks = list(extra_hooks) + [(n, ctypes.cast(cfn, ctypes.c_void_p), None) for n in names]
        arr = (_lib.Hook * max(1, len(hooks)))()
        keep = []
        for i, (n, f, u) in enumerate(hooks):
            nb = b(n)
            keep.append(nb)
            arr[i] = _lib.Hook(nb, f, u)
        fo = _lib.ForwardOpts(arr, len(hooks), 0,
                              logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
                              if logits is not None else None, 0)
        s = lib.cterp_model_forward(self._m, tokens.ctypes.data, tokens.shape[0], tokens.shape[1],
                                    ctypes.byref(fo))
        if err:
            lib.cterp_clear_error()
            raise err[0]
        check(s, "forward")

    def trace(self, text_or_texts, hooks=None):
        """Runs the model on one text or a list (one batch, right-padded) and captures every hook
        point (or `hooks`): `with model.trace(texts) as tr: tr.activations[name]`."""
        texts = [text_or_texts] if isinstance(text_or_texts, str) else list(text_or_texts)
        if not texts:
            raise CterpError("trace: no texts")
        return Trace(self, texts, hooks)

    def run_with_cache(self, text, hooks=None):
        """(logits, activations) of one text, TransformerLens-style."""
        t = self.trace(text, hooks)
        return t.logits, t.activations

    # ---- SAEs ---------------------------------------------------------------------------------
    def train_sae(self, layer, dataset, component="mlp", save_path=None, config=None,
                  verbose=True, callback=None, context_size=128, buffer_rows=0, model_batch=8):
        """Trains an SAE on the activations of `component` at `layer` over `dataset` (a list of
        texts, or a dataset path: .txt, .jsonl, folder, token .bin) as cterp train --model does:
        activation store (cterp_act_store) -> trainer (cterp_trainer_*), step by step.
        Ctrl-C stops it at the next step: the SAE so far is returned (sae.interrupted) and a
        checkpoint written (sae.checkpoint). callback(metrics: dict) is called every log_every
        steps. context_size, buffer_rows, model_batch: as the CLI's --context-size, --buffer-rows,
        --model-batch. Returns the SAE (saved to save_path with metrics.jsonl when given)."""
        cfg = as_config(config)
        hook = self.hook_name(layer, component)
        data, tmp = _dataset_file(dataset)
        sc = _store_config(cfg, context_size, buffer_rows, model_batch)
        src = _lib.ActSource()
        try:
            check(lib.cterp_act_store(ctypes.byref(src), self._m, b(hook), b(data),
                                      ctypes.byref(sc), cfg.batch_size), "train_sae")
            meta = _lib.SaeMeta()
            lib.cterp_store_meta(ctypes.byref(meta), b(os.path.basename(self.path)), b(hook),
                                 b(data), ctypes.byref(sc.windows))
            return run_trainer(src, cfg, save_path, meta, verbose, callback,
                               desc="train_sae %s" % hook)
        finally:
            lib.cterp_act_source_free(ctypes.byref(src))
            if tmp:
                os.unlink(tmp)

    def train_transcoder(self, layer, dataset, save_path=None, config=None, hook_in=None,
                         hook_out=None, verbose=True, callback=None, context_size=128,
                         buffer_rows=0, model_batch=8):
        """Trains a transcoder (config architecture "transcoder" or "skip_transcoder", the
        default "transcoder") from the MLP's normalized input blocks.L.ln2.hook_normalized to its
        output blocks.L.hook_mlp_out at `layer`, or from hook_in to hook_out when both are given,
        both read from one forward per batch (cterp_act_pair_store), as cterp train --model
        --arch transcoder --layer L --component mlp does. Otherwise as train_sae; the saved
        cfg.json has hook_name = the input hook and hook_name_out = the output hook."""
        cfg = as_config(config if config is not None else SAEConfig(architecture="transcoder"))
        if cfg.architecture not in ("transcoder", "skip_transcoder"):
            raise CterpError("train_transcoder: architecture %r: expected transcoder or "
                             "skip_transcoder" % cfg.architecture)
        if (hook_in is None) != (hook_out is None):
            raise CterpError("train_transcoder: give both hook_in and hook_out, or neither (the "
                             "MLP at layer)")
        if hook_in is None:
            if layer is None:
                raise CterpError("train_transcoder: give a layer (or hook_in and hook_out)")
            hook_in = "blocks.%d.ln2.hook_normalized" % int(layer)
            hook_out = "blocks.%d.hook_mlp_out" % int(layer)
        hook_in, hook_out = self.hook_name(None, hook_in), self.hook_name(None, hook_out)
        data, tmp = _dataset_file(dataset)
        sc = _store_config(cfg, context_size, buffer_rows, model_batch)
        src = _lib.ActSource()
        try:
            check(lib.cterp_act_pair_store(ctypes.byref(src), self._m, b(hook_in), b(hook_out),
                                           b(data), ctypes.byref(sc), cfg.batch_size),
                  "train_transcoder")
            meta = _lib.SaeMeta()
            lib.cterp_store_meta(ctypes.byref(meta), b(os.path.basename(self.path)), b(hook_in),
                                 b(data), ctypes.byref(sc.windows))
            meta.hook_name_out = b(hook_out)
            return run_trainer(src, cfg, save_path, meta, verbose, callback,
                               desc="train_transcoder %s -> %s" % (hook_in, hook_out))
        finally:
            lib.cterp_act_source_free(ctypes.byref(src))
            if tmp:
                os.unlink(tmp)

    def train_crosscoder(self, layers=None, dataset=None, save_path=None, config=None,
                         component="resid", hooks=None, verbose=True, callback=None,
                         context_size=128, buffer_rows=0, model_batch=8):
        """Trains a crosscoder (config architecture "crosscoder", the default) over the rows of
        `component` at several `layers` (a list or range of ints, or "A-B"), or over `hooks`
        (TransformerLens names, one width), side by side for the same tokens from one forward
        per batch (cterp_act_concat_store), as cterp train --model --arch crosscoder --layers
        A-B --component C does (same weights). Otherwise as train_sae; the saved directory is
        cterp's crosscoder format (cfg.json n_layers, hook_names; docs/formats.md). The CLI's
        per-layer eval at the end is not run here (cterp eval --sae DIR does it)."""
        cfg = as_config(config if config is not None else SAEConfig(architecture="crosscoder"))
        if cfg.architecture != "crosscoder":
            raise CterpError("train_crosscoder: architecture %r: expected crosscoder"
                             % cfg.architecture)
        if (layers is None) == (hooks is None):
            raise CterpError("train_crosscoder: give layers (with component) or hooks, not both "
                             "and not neither")
        if dataset is None:
            raise CterpError("train_crosscoder: give a dataset (texts or a dataset path)")
        if hooks is None:
            if isinstance(layers, str):  # "A-B", as the CLI's --layers
                a, sep, z = layers.partition("-")
                if not sep or not a.strip().isdigit() or not z.strip().isdigit():
                    raise CterpError("train_crosscoder: layers %r: expected \"A-B\" or a list of "
                                     "ints" % layers)
                layers = range(int(a), int(z) + 1)
            hooks = [self.hook_name(int(l), component) for l in layers]
        else:
            hooks = [self.hook_name(None, h) for h in hooks]
        if len(hooks) < 2:
            raise CterpError("train_crosscoder: %d hook(s) (%s): a crosscoder reads two or more "
                             "layers; for one layer train an SAE" % (len(hooks), ", ".join(hooks)))
        if len(set(hooks)) != len(hooks):
            raise CterpError("train_crosscoder: a hook is given twice (%s)" % ", ".join(hooks))
        joined = ",".join(hooks)  # cfg.json's hook_names, through the metadata (255 bytes)
        if len(joined.encode()) > 255:
            raise CterpError("train_crosscoder: the hook names are %d characters together, at "
                             "most 255" % len(joined.encode()))
        data, tmp = _dataset_file(dataset)
        sc = _store_config(cfg, context_size, buffer_rows, model_batch)
        names = (ctypes.c_char_p * len(hooks))(*[b(h) for h in hooks])
        src = _lib.ActSource()
        try:
            check(lib.cterp_act_concat_store(ctypes.byref(src), self._m, names, len(hooks),
                                             b(data), ctypes.byref(sc), cfg.batch_size),
                  "train_crosscoder")
            meta = _lib.SaeMeta()
            lib.cterp_store_meta(ctypes.byref(meta), b(os.path.basename(self.path)), b(joined),
                                 b(data), ctypes.byref(sc.windows))
            return run_trainer(src, cfg, save_path, meta, verbose, callback,
                               desc="train_crosscoder %s .. %s" % (hooks[0], hooks[-1]))
        finally:
            lib.cterp_act_source_free(ctypes.byref(src))
            if tmp:
                os.unlink(tmp)

    def train_saes(self, hooks, dataset, save_dir=None, config=None, verbose=True,
                   context_size=128, buffer_rows=0, model_batch=8):
        """Several hooks, one forward: one SAE per hook (TransformerLens names) from a single run
        of the model, as cterp train --hooks (cterp_multi_store: each SAE gets the rows, in the
        order, train_sae on its hook alone would, so the same config gives the same weights).
        config: one SAEConfig for all, or a list of one per hook (they may differ in the SAE's
        fields, not in batch_size, seed or steps). Saved to save_dir/<hook> when given. Returns
        the SAEs in hook order."""
        hooks = [self.hook_name(None, h) for h in hooks]
        cfgs = list(config) if isinstance(config, (list, tuple)) else [config] * len(hooks)
        if len(cfgs) != len(hooks):
            raise CterpError("train_saes: %d configs for %d hooks" % (len(cfgs), len(hooks)))
        cfgs = [as_config(c) for c in cfgs]
        for h, c in zip(hooks[1:], cfgs[1:]):
            for f in ("batch_size", "seed", "steps"):
                if getattr(c, f) != getattr(cfgs[0], f):
                    raise CterpError("train_saes: hook %s: %s %s differs from hook %s's %s (one "
                                     "forward feeds every hook)" % (h, f, getattr(c, f), hooks[0],
                                                                    getattr(cfgs[0], f)))
        data, tmp = _dataset_file(dataset)
        sc = _store_config(cfgs[0], context_size, buffer_rows, model_batch)
        n = len(hooks)
        names = (ctypes.c_char_p * n)(*[b(h) for h in hooks])
        ms = ctypes.c_void_p()
        srcs = [_lib.ActSource() for _ in hooks]
        ts = [ctypes.c_void_p() for _ in hooks]
        try:
            check(lib.cterp_multi_store_open(ctypes.byref(ms), self._m, names, n, b(data),
                                             ctypes.byref(sc), cfgs[0].batch_size), "train_saes")
            for i in range(n):  # every source before the first read
                check(lib.cterp_multi_store_source(ms, i, ctypes.byref(srcs[i])), "train_saes")
            paths = [os.path.join(save_dir, h) if save_dir else None for h in hooks]
            for i, h in enumerate(hooks):
                check(lib.cterp_trainer_create(ctypes.byref(ts[i]), ctypes.byref(cfgs[i]._c),
                                               ctypes.byref(srcs[i])), "train_saes %s" % h)
                meta = _lib.SaeMeta()
                lib.cterp_store_meta(ctypes.byref(meta), b(os.path.basename(self.path)), b(h),
                                     b(data), ctypes.byref(sc.windows))
                lib.cterp_trainer_set_meta(ts[i], ctypes.byref(meta))
                lib.cterp_trainer_set_output(ts[i], b(paths[i]), None, None)
            steps = cfgs[0].steps
            for step in range(lib.cterp_trainer_step(ts[0]), steps):  # a step of each in turn
                for i, h in enumerate(hooks):
                    check(lib.cterp_trainer_run(ts[i], step + 1), "train_saes %s" % h)
                if verbose and ((step + 1) % max(1, cfgs[0].log_every) == 0 or step + 1 == steps):
                    print("train_saes step %d/%d  %s" % (step + 1, steps, "  ".join(
                        "ev %.4f" % lib.cterp_trainer_last_metrics(t).contents.explained_variance
                        for t in ts)), flush=True)
            saes = []
            for i, h in enumerate(hooks):
                if paths[i]:
                    check(lib.cterp_trainer_save(ts[i], b(paths[i])), paths[i])
                out = ctypes.POINTER(_lib.Sae)()
                check(lib.cterp_trainer_export(ts[i], ctypes.byref(out)), "train_saes %s" % h)
                saes.append(SAE(out, paths[i]))
            return saes
        finally:
            for t in ts:
                if t:
                    lib.cterp_trainer_free(t)
            for src in srcs:
                lib.cterp_act_source_free(ctypes.byref(src))
            if ms:
                lib.cterp_multi_store_free(ms)
            if tmp:
                os.unlink(tmp)

    def load_sae(self, path):
        """SAE.load_from_disk(path)."""
        return SAE.load_from_disk(path)

    def _sae_hook(self, sae, layer, component):
        if layer is not None:
            return self.hook_name(layer, component)
        if not sae.hook_name:
            raise CterpError("the SAE has no hook_name in its metadata: give layer=")
        return self.hook_name(None, sae.hook_name)

    def feature_acts(self, text, sae, layer=None, component="mlp"):
        """(token ids, f (T, d_sae)) of one text at the SAE's hook: cterp_features_on_tokens."""
        sae = as_sae(sae)
        hook = self._sae_hook(sae, layer, component)
        ids = np.array(self.encode(text), dtype=np.int32)
        if ids.size == 0:
            raise CterpError("the text gave no tokens")
        f = np.empty((ids.size, sae.d_sae), dtype=np.float32)
        check(lib.cterp_features_on_tokens(self._m, sae._ptr, b(hook), ids.ctypes.data, ids.size,
                                           f.ctypes.data), "feature_acts")
        return ids, f

    def _special(self, ids):
        return np.array([bool(lib.cterp_tokenizer_is_special(self._tok, int(i))) for i in ids])

    def get_top_features_for_text(self, text, sae, layer=None, component="mlp", top_k=10):
        """The latents with the largest activation on the text (special tokens left out, as
        cterp features --text): [(feature_id, max activation), ...], highest first."""
        ids, f = self.feature_acts(text, sae, layer, component)
        f = f[~self._special(ids)]
        if f.shape[0] == 0:
            return []
        mx = f.max(axis=0)
        order = sorted(range(mx.size), key=lambda i: (-mx[i], i))
        return [(int(i), float(mx[i])) for i in order[:top_k] if mx[i] > 0]

    def get_top_texts_for_feature(self, feature_id, sae, texts, layer=None, component="mlp",
                                  top_k=10):
        """The texts where a latent fires most: [(text, max activation, token position), ...],
        highest first (texts where it never fires are left out)."""
        sae = as_sae(sae)
        if not 0 <= int(feature_id) < sae.d_sae:
            raise CterpError("feature %d: the SAE has %d latents" % (feature_id, sae.d_sae))
        out = []
        for t in texts:
            ids, f = self.feature_acts(t, sae, layer, component)
            col = np.where(self._special(ids), 0, f[:, int(feature_id)])
            p = int(col.argmax())
            if col[p] > 0:
                out.append((t, float(col[p]), p))
        out.sort(key=lambda r: -r[1])
        return out[:top_k]

    def visualize_feature_activations(self, text, sae, feature_id=None, layer=None,
                                      component="mlp"):
        """Per-token activations of a text, shown as HTML in a notebook (_repr_html_): the latent
        feature_id, or the top latents of the text."""
        ids, f = self.feature_acts(text, sae, layer, component)
        return FeatureActivations([self.token_str(i) for i in ids], f, feature_id, text)

    # ---- generation ---------------------------------------------------------------------------
    def generate(self, prompt, n=40, steer=None, sae=None, ablate=(), clamp=None, temperature=0.0,
                 top_p=1.0, seed=0, layer=None, component="mlp"):
        """Text of prompt + up to n generated tokens (cterp_generate; greedy by default).
        With sae=: steer={feature: strength} adds strength * W_dec[feature] at every position,
        clamp={feature: value} sets the latent through the SAE and ablate=[features] sets it to
        0, both keeping the error term x - SAE(x) (cterp_steer_hook, as cterp steer)."""
        ids = np.array(self.encode(prompt), dtype=np.int32)
        if ids.size == 0:
            raise CterpError("generate: empty prompt and the vocabulary adds no BOS")
        edits = [(f, 0, v) for f, v in (steer or {}).items()] + \
                [(f, 1, v) for f, v in (clamp or {}).items()] + [(f, 2, 0.0) for f in ablate]
        steers, hooks = [], []
        fo = None
        try:
            if edits:
                if sae is None:
                    raise CterpError("generate: steer/clamp/ablate need sae=")
                sae = as_sae(sae)
                hook = b(self._sae_hook(sae, layer, component))
                for f, mode, v in edits:
                    st = _lib.Steer()
                    check(lib.cterp_steer_init(ctypes.byref(st), sae._ptr, int(f), mode, float(v)),
                          "generate: feature %s" % f)
                    steers.append(st)
                arr = (_lib.Hook * len(steers))()
                for i, st in enumerate(steers):
                    arr[i] = _lib.Hook(hook, _lib.steer_hook_address(),
                                       ctypes.cast(ctypes.byref(st), ctypes.c_void_p))
                hooks = [arr, hook, sae]
                fo = _lib.ForwardOpts(arr, len(steers), 0, None, 0)
            sp = _lib.SamplerParams(float(temperature), float(top_p), int(seed))
            out = ctypes.POINTER(ctypes.c_int32)()
            n_out = ctypes.c_int()
            check(lib.cterp_generate(self._m, ids.ctypes.data, ids.size, int(n), ctypes.byref(sp),
                                     ctypes.byref(fo) if fo is not None else None, None, None,
                                     ctypes.byref(out), ctypes.byref(n_out)), "generate")
            try:
                toks = [out[i] for i in range(n_out.value)]
            finally:
                _lib.c_free(out)
            return self.decode(toks)
        finally:
            for st in steers:
                lib.cterp_steer_free(ctypes.byref(st))
            del hooks
