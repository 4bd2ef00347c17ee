"""Training: the C trainer driven one step at a time (cterp_trainer_run(t, step + 1)), so that a
progress bar follows it and Ctrl-C (KeyboardInterrupt) stops it between two steps with the SAE so
far kept and a checkpoint written."""
import ctypes
import os
import sys
import tempfile
import time

import numpy as np

from . import _lib
from ._lib import CterpError, b, check, lib
from .config import as_config
from .sae import SAE

METRIC_FIELDS = [f for f, _ in _lib.TrainMetrics._fields_ if f != "density_hist"]


def metrics_dict(m):
    d = {f: getattr(m, f) for f in METRIC_FIELDS}
    d["density_hist"] = list(m.density_hist)
    return d


class _Progress:
    """A tqdm bar when tqdm is importable, else a plain line every log_every steps."""

    def __init__(self, steps, verbose, desc):
        self.bar = None
        self.verbose = verbose
        if not verbose:
            return
        try:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=steps, desc=desc, unit="step")
        except ImportError:
            print("%s: %d steps" % (desc, steps), file=sys.stderr, flush=True)

    def update(self, step, m, log_step):
        if not self.verbose:
            return
        if self.bar is not None:
            self.bar.n = step
            if log_step:
                self.bar.set_postfix(loss="%.4g" % m.loss, ev="%.3f" % m.explained_variance,
                                     l0="%.1f" % m.l0, dead="%.1f%%" % (100 * m.dead_fraction),
                                     refresh=False)
            self.bar.refresh()
        elif log_step:
            print("step %d/%d  loss %.4g  ev %.4f  l0 %.2f  dead %.1f%%  lr %.3g" %
                  (m.step, m.steps, m.loss, m.explained_variance, m.l0, 100 * m.dead_fraction,
                   m.lr), file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def run_trainer(src, cfg, save_path=None, meta=None, verbose=True, callback=None, desc="train"):
    """Creates a trainer over the cterp_act_source `src` (owned by the caller), trains cfg's
    steps and returns the exported SAE (saved to save_path when given, with metrics.jsonl)."""
    t = ctypes.c_void_p()
    check(lib.cterp_trainer_create(ctypes.byref(t), ctypes.byref(cfg._c), ctypes.byref(src)),
          "train")
    try:
        if meta is not None:
            lib.cterp_trainer_set_meta(t, ctypes.byref(meta))
        lib.cterp_trainer_set_output(t, b(save_path), None, None)
        steps = cfg.steps
        log_every = max(1, cfg.log_every)
        prog = _Progress(steps, verbose, desc)
        interrupted = False
        try:
            step = lib.cterp_trainer_step(t)
            while step < steps:
                check(lib.cterp_trainer_run(t, step + 1), "train")
                step = lib.cterp_trainer_step(t)
                m = lib.cterp_trainer_last_metrics(t).contents
                log_step = step % log_every == 0 or step == steps
                prog.update(step, m, log_step)
                if callback is not None and log_step:
                    callback(metrics_dict(m))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            prog.close()
        checkpoint = None
        if interrupted:  # the trainer is between two steps: keep what it has
            step = lib.cterp_trainer_step(t)
            base = save_path or tempfile.mkdtemp(prefix="cterp_interrupted_")
            checkpoint = os.path.join(base, "checkpoints", "step_%d" % step)
            check(lib.cterp_trainer_checkpoint(t, b(checkpoint)), checkpoint)
            print("cterp: interrupted at step %d of %d; checkpoint in %s (resume with cterp train "
                  "--resume)" % (step, steps, checkpoint), file=sys.stderr, flush=True)
        if save_path:
            check(lib.cterp_trainer_save(t, b(save_path)), os.fspath(save_path))
        out = ctypes.POINTER(_lib.Sae)()
        check(lib.cterp_trainer_export(t, ctypes.byref(out)), "train")
        sae = SAE(out, save_path)
        sae.interrupted = interrupted
        sae.checkpoint = checkpoint
        sae.metrics = metrics_dict(lib.cterp_trainer_last_metrics(t).contents)
        return sae
    finally:
        lib.cterp_trainer_free(t)


def train(acts, config=None, save_path=None, verbose=True, callback=None, d_in=None):
    """Trains an SAE on activations: a float32 numpy array (n, d_in), a .npy or raw f32 file
    (d_in given), or a Toy (its stream). Rows are served in a seeded random order
    (cterp_act_source_file; the toy: cterp_toy_source). Returns the SAE."""
    from .toy import Toy
    cfg = as_config(config)
    src = _lib.ActSource()
    tmp = None
    try:
        if isinstance(acts, Toy):
            check(lib.cterp_toy_source(ctypes.byref(src), acts._t), "toy")
        else:
            if isinstance(acts, np.ndarray):
                if acts.dtype != np.float32 or acts.ndim != 2:
                    raise CterpError("train: activations must be a float32 array (n, d_in), got "
                                     "%s %s" % (acts.dtype, acts.shape))
                fd, tmp = tempfile.mkstemp(suffix=".npy", prefix="cterp_acts_")
                os.close(fd)
                np.save(tmp, acts)
                path = tmp
            else:
                path = os.fspath(acts)
            check(lib.cterp_act_source_file(ctypes.byref(src), b(path), int(d_in or 0), cfg.seed),
                  path)
        return run_trainer(src, cfg, save_path, None, verbose, callback)
    finally:
        lib.cterp_act_source_free(ctypes.byref(src))
        if tmp:
            os.unlink(tmp)
