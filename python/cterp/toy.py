"""The toy model of superposition (cterp_toy) and MMCS, for checking an SAE against ground truth."""
import ctypes
import weakref

import numpy as np

from . import _lib
from ._lib import CterpError, check, lib
from .sae import as_f32


class Toy:
    """Toy(n_features=512, d=128, avg_active=5, decay=0.99, correlation=0, mag_min=0, mag_max=1,
    seed=0): G unit directions in d dimensions, sparse non-negative mixtures of them
    (cterp_toy_create; defaults: cterp_toy_config_default)."""

    def __init__(self, **kw):
        c = _lib.ToyConfig()
        lib.cterp_toy_config_default(ctypes.byref(c))
        for k, v in kw.items():
            if k not in dict(_lib.ToyConfig._fields_):
                raise CterpError("Toy: unknown option '%s' (options: %s)" % (
                    k, ", ".join(f for f, _ in _lib.ToyConfig._fields_)))
            setattr(c, k, v)
        self.config = c
        self._t = ctypes.c_void_p()
        check(lib.cterp_toy_create(ctypes.byref(self._t), ctypes.byref(c)), "Toy")
        self._fin = weakref.finalize(self, lib.cterp_toy_free, self._t)

    @property
    def d(self):
        return self.config.d

    @property
    def features(self):
        """(G, d) ground-truth directions (a copy)."""
        p = lib.cterp_toy_features(self._t)
        return np.ctypeslib.as_array(p, (self.config.n_features, self.config.d)).copy()

    def sample(self, B, batch=0):
        """Batch number `batch` of the stream: x (B, d) float32 (cterp_toy_sample)."""
        x = np.empty((int(B), self.config.d), dtype=np.float32)
        lib.cterp_toy_sample(self._t, int(batch), x.ctypes.data, int(B), None)
        return x

    def mmcs(self, W):
        """Mean max cosine similarity of the true features to the rows of W (an SAE: its W_dec):
        (recovery, precision), cterp_mmcs."""
        from .sae import SAE
        if isinstance(W, SAE):
            W = W.W_dec
        W2, _ = as_f32(W, self.config.d, "mmcs W", "d")
        rev = ctypes.c_double()
        feats = self.features
        r = lib.cterp_mmcs(feats.ctypes.data, self.config.n_features, W2.ctypes.data,
                           W2.shape[0], self.config.d, ctypes.byref(rev))
        return r, rev.value
