"""SAELens-like SAE over a C cterp_sae: load/save SAELens directories, encode/decode, the weights
as numpy views of the C parameter block."""
import ctypes
import json
import os
import weakref

import numpy as np

from . import _lib
from ._lib import CterpError, b, check, lib

ARCH_NAMES = ["standard", "topk", "batchtopk", "jumprelu", "matryoshka_batchtopk", "gated",
              "transcoder", "skip_transcoder", "crosscoder"]


class Cfg(dict):
    """cfg.json as a dict whose keys are also attributes (sae.cfg.d_in); a key missing at the
    top level is looked up in "metadata" (sae.cfg.hook_name, as SAELens v5 configs had it)."""

    def __getattr__(self, name):
        if name in self:
            v = self[name]
        elif isinstance(self.get("metadata"), dict) and name in self["metadata"]:
            v = self["metadata"][name]
        else:
            raise AttributeError("cfg has no field '%s' (fields: %s)" % (name, ", ".join(self)))
        return Cfg(v) if isinstance(v, dict) and not isinstance(v, Cfg) else v


def as_f32(x, width, what, width_name):
    """Checks an input array: float32, last dimension `width`. Lists are converted; numpy arrays of
    another dtype are refused (no silent copy or precision change). Returns (2-D C-contiguous view
    or copy, leading shape)."""
    if not isinstance(x, np.ndarray):
        x = np.asarray(x, dtype=np.float32)
    if x.dtype != np.float32:
        raise CterpError("%s: expected a float32 array, got %s (convert it: x.astype(np.float32))"
                         % (what, x.dtype))
    if x.ndim < 1 or x.shape[-1] != width:
        raise CterpError("%s: expected shape (B, %d) (or (..., %d)): the last dimension is the "
                         "SAE's %s, got shape %s" % (what, width, width, width_name, x.shape))
    lead = x.shape[:-1]
    return np.ascontiguousarray(x.reshape(-1, width)), lead


def _view(owner, ptr, shape):
    """A numpy array over C memory that keeps `owner` alive while it exists."""
    n = int(np.prod(shape))
    buf = (ctypes.c_float * n).from_address(ctypes.addressof(ptr.contents))
    buf._owner = owner  # the ctypes buffer is the array's base: it holds the SAE
    return np.frombuffer(buf, dtype=np.float32, count=n).reshape(shape)


class SAE:
    """A sparse autoencoder (SAELens v6 semantics): f = act((x - b_dec) W_enc + b_enc),
    x_hat = f W_dec + b_dec. W_enc (d_in, d_sae), W_dec (d_sae, d_in), b_enc (d_sae),
    b_dec (d_in) and threshold (d_sae, jumprelu) are views of the C parameters: writing into them
    changes the SAE."""

    def __init__(self, ptr, path=None):
        if not ptr:
            raise CterpError("SAE: NULL pointer")
        self._ptr = ptr
        self._fin = weakref.finalize(self, lib.cterp_sae_free, ptr)
        self.path = os.fspath(path) if path is not None else None
        self._cfg = None
        self.interrupted = False  # set by train_sae when stopped by KeyboardInterrupt
        self.checkpoint = None  # that run's checkpoint directory

    # ---- loading and saving ------------------------------------------------------------------
    @classmethod
    def load_from_disk(cls, path, device="cpu", dtype=None, **kwargs):
        """Reads an SAELens directory (cfg.json + sae_weights.safetensors): cterp_sae_load.
        device/dtype are accepted for SAELens compatibility; cterp computes in float32 on the
        CPU."""
        if device not in ("cpu", None):
            raise CterpError("SAE.load_from_disk: device '%s': cterp runs on the CPU" % device)
        out = ctypes.POINTER(_lib.Sae)()
        check(lib.cterp_sae_load(b(path), ctypes.byref(out)), os.fspath(path))
        return cls(out, path)

    @classmethod
    def create(cls, d_in, d_sae, architecture="topk", k=8):
        """A zeroed SAE (cterp_sae_create); fill its weights through the views."""
        a = ctypes.c_int()
        check(lib.cterp_arch_parse(b(architecture), ctypes.byref(a)), "architecture")
        out = ctypes.POINTER(_lib.Sae)()
        check(lib.cterp_sae_create(ctypes.byref(out), a.value, int(d_in), int(d_sae), int(k)))
        return cls(out)

    def save_model(self, path, sparsity=None):
        """Writes an SAELens v6 directory (cterp_sae_save); `sparsity` (d_sae,) log10 densities
        adds sparsity.safetensors."""
        sp = None
        if sparsity is not None:
            sp, _ = as_f32(sparsity, self.d_sae, "save_model sparsity", "d_sae")
        check(lib.cterp_sae_save(self._ptr, b(path), sp.ctypes.data if sp is not None else None),
              os.fspath(path))
        self.path = os.fspath(path)
        self._cfg = None

    # ---- shape and config ---------------------------------------------------------------------
    @property
    def _s(self):
        return self._ptr.contents

    @property
    def d_in(self):
        return int(self._s.d_in)

    @property
    def d_sae(self):
        return int(self._s.d_sae)

    @property
    def d_out(self):
        """Width of the reconstruction: d_in, except for transcoders."""
        return int(self._s.d_out)

    @property
    def architecture(self):
        return ARCH_NAMES[self._s.arch]

    @property
    def hook_name(self):
        return self._s.meta.hook_name.decode()

    @property
    def cfg(self):
        """cfg.json's fields (read from the directory the SAE came from or was saved to; else
        built from the C struct with the same names)."""
        if self._cfg is None:
            p = os.path.join(self.path, "cfg.json") if self.path else None
            if p and os.path.exists(p):
                with open(p) as f:
                    self._cfg = Cfg(json.load(f))
            else:
                s, m = self._s, self._s.meta
                c = {"architecture": self.architecture, "d_in": self.d_in, "d_sae": self.d_sae,
                     "dtype": "float32", "device": "cpu",
                     "apply_b_dec_to_input": bool(s.apply_b_dec_to_input),
                     "normalize_activations": s.normalize_activations.decode(),
                     "metadata": {"model_name": m.model_name.decode(),
                                  "hook_name": m.hook_name.decode(),
                                  "hook_head_index": None if m.hook_head_index < 0
                                  else m.hook_head_index,
                                  "context_size": m.context_size,
                                  "prepend_bos": bool(m.prepend_bos),
                                  "dataset_path": m.dataset_path.decode(),
                                  "training_tokens": m.training_tokens}}
                if s.arch == 1:
                    c["k"] = s.k
                self._cfg = Cfg(c)
        return self._cfg

    # ---- weights (views) ----------------------------------------------------------------------
    @property
    def W_enc(self):  # (d_in, d_sae): the transpose of the C (d_sae, d_in) rows, no copy
        return _view(self, self._s.W_enc, (self.d_sae, self.d_in)).T

    @property
    def W_dec(self):  # (d_sae, d_out); d_out = d_in except for transcoders
        return _view(self, self._s.W_dec, (self.d_sae, self.d_out))

    @property
    def b_enc(self):
        return _view(self, self._s.b_enc, (self.d_sae,))

    @property
    def b_dec(self):
        return _view(self, self._s.b_dec, (self.d_out,))

    @property
    def threshold(self):
        return _view(self, self._s.threshold, (self.d_sae,)) if self._s.threshold else None

    @property
    def r_mag(self):
        """gated: (d_sae) log-scale of the magnitude path's encoder rows (None otherwise)."""
        return _view(self, self._s.r_mag, (self.d_sae,)) if self._s.r_mag else None

    @property
    def b_mag(self):
        """gated: (d_sae) magnitude bias (None otherwise); b_enc is the gate's bias b_gate."""
        return _view(self, self._s.b_mag, (self.d_sae,)) if self._s.b_mag else None

    @property
    def W_skip(self):
        """skip_transcoder: (d_out, d_in) skip connection (None otherwise)."""
        return _view(self, self._s.W_skip, (self.d_out, self.d_in)) if self._s.W_skip else None

    # ---- inference ----------------------------------------------------------------------------
    def encode(self, x):
        """Latent activations f (..., d_sae) of float32 x (..., d_in): cterp_sae_encode."""
        x2, lead = as_f32(x, self.d_in, "SAE.encode x", "d_in")
        f = np.empty((x2.shape[0], self.d_sae), dtype=np.float32)
        if x2.shape[0]:
            check(lib.cterp_sae_encode(self._ptr, x2.ctypes.data, x2.shape[0], f.ctypes.data),
                  "SAE.encode")
        return f.reshape(lead + (self.d_sae,))

    def decode(self, f):
        """Reconstruction x_hat (..., d_out) of float32 f (..., d_sae): cterp_sae_decode (for a
        skip_transcoder without its skip term, as SAELens's decode; __call__ adds it)."""
        f2, lead = as_f32(f, self.d_sae, "SAE.decode f", "d_sae")
        x = np.empty((f2.shape[0], self.d_out), dtype=np.float32)
        if f2.shape[0]:
            check(lib.cterp_sae_decode(self._ptr, f2.ctypes.data, f2.shape[0], x.ctypes.data),
                  "SAE.decode")
        return x.reshape(lead + (self.d_out,))

    def __call__(self, x):
        """decode(encode(x)), as SAELens's forward (+ x W_skip^T for a skip_transcoder):
        cterp_sae_forward."""
        x2, lead = as_f32(x, self.d_in, "SAE x", "d_in")
        y = np.empty((x2.shape[0], self.d_out), dtype=np.float32)
        if x2.shape[0]:
            check(lib.cterp_sae_forward(self._ptr, x2.ctypes.data, x2.shape[0], y.ctypes.data),
                  "SAE.forward")
        return y.reshape(lead + (self.d_out,))

    def __repr__(self):
        return "SAE(%s, d_in=%d, d_sae=%d%s%s)" % (
            self.architecture, self.d_in, self.d_sae,
            ", k=%d" % self._s.k if self._s.arch == 1 else "",
            ", hook=%s" % self.hook_name if self.hook_name else "")


def as_sae(sae):
    """An SAE, or a directory to load one from."""
    if isinstance(sae, SAE):
        return sae
    if isinstance(sae, (str, os.PathLike)):
        return SAE.load_from_disk(sae)
    raise CterpError("expected an SAE or an SAE directory, got %r" % type(sae).__name__)
