"""The C library through ctypes: finding libcterp.so, the structs the package shares with it, the
prototypes of the calls it makes, and CterpError.

Structs mirror include/cterp/*.h field for field (python/tests/test_layout.py compiles the headers
and compares every size and offset). Each prototype names its C function; docs/python.md maps the
package's API onto them.
"""
import ctypes
import os
from ctypes import (POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int, c_int32,
                    c_int64, c_size_t, c_uint8, c_uint64, c_void_p)

__all__ = ["CterpError", "lib", "check", "library_path"]


class CterpError(Exception):
    """A failure reported by the C library (its cterp_last_error() message), or an argument the
    package refused before calling it. `status` is the cterp_status code (1 = invalid argument,
    2 = I/O, 3 = format, 4 = memory, 5 = NaN, 6 = not found)."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


# ---- finding the library ------------------------------------------------------------------------

def _candidates():
    env = os.environ.get("CTERP_LIB")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, "libcterp.so")  # installed next to the package
    # the source tree: python/cterp -> build/ (scripts/build.sh release)
    yield os.path.join(here, "..", "..", "build", "libcterp.so")


def _load():
    tried = []
    for p in _candidates():
        p = os.path.abspath(p)
        if os.path.exists(p):
            return ctypes.CDLL(p), p
        tried.append(p)
    raise ImportError("cterp: libcterp.so not found (tried %s); build it (bash scripts/build.sh) "
                      "or point CTERP_LIB at it" % ", ".join(tried))


lib, library_path = _load()

# ---- structs (include/cterp/*.h) ----------------------------------------------------------------


class SaeMeta(Structure):  # cterp_sae_meta
    _fields_ = [("model_name", c_char * 256), ("hook_name", c_char * 256),
                ("hook_head_index", c_int), ("context_size", c_int), ("prepend_bos", c_int),
                ("dataset_path", c_char * 1024), ("training_tokens", c_int64),
                ("sequence_separator_token", c_char * 32), ("exclude_special_tokens", c_int),
                ("disable_concat_sequences", c_int), ("hook_name_out", c_char * 256)]


class Sae(Structure):  # cterp_sae
    _fields_ = [("arch", c_int), ("d_in", c_int64), ("d_sae", c_int64), ("d_out", c_int64), ("n_layers", c_int64),
                ("k", c_int),
                ("rescale_acts_by_decoder_norm", c_int), ("apply_b_dec_to_input", c_int),
                ("normalize_activations", c_char * 32), ("params", POINTER(c_float)),
                ("n_params", c_size_t), ("W_enc", POINTER(c_float)), ("b_enc", POINTER(c_float)),
                ("W_dec", POINTER(c_float)), ("b_dec", POINTER(c_float)),
                ("threshold", POINTER(c_float)), ("r_mag", POINTER(c_float)),
                ("b_mag", POINTER(c_float)), ("W_skip", POINTER(c_float)), ("meta", SaeMeta)]


class TrainConfig(Structure):  # cterp_train_config
    _fields_ = [("architecture", c_int), ("d_sae", c_int64), ("expansion_factor", c_int),
                ("k", c_int), ("k_anneal_steps", c_int64), ("k_anneal_start", c_int),
                ("rescale_acts_by_decoder_norm", c_int),
                ("jumprelu_bandwidth", c_float), ("jumprelu_init_threshold", c_float),
                ("topk_threshold_lr", c_float), ("matryoshka_widths", c_int64 * 16),
                ("n_matryoshka_widths", c_int), ("gated_detach_aux_decoder", c_int),
                ("lr", c_float), ("lr_end", c_float),
                ("lr_scheduler", c_int), ("lr_warm_up_steps", c_int64),
                ("lr_decay_steps", c_int64), ("adam_beta1", c_float), ("adam_beta2", c_float),
                ("adam_eps", c_float), ("grad_clip", c_float), ("l1_coefficient", c_float),
                ("l0_coefficient", c_float), ("sparsity_warm_up_steps", c_int64),
                ("feature_sampling_window", c_int64), ("dead_feature_window", c_int64),
                ("use_ghost_grads", c_int), ("use_auxk", c_int), ("aux_k", c_int),
                ("aux_k_coefficient", c_float), ("decoder_init_norm", c_float),
                ("b_dec_init", c_int), ("normalize_activations", c_int),
                ("norm_estimate_batches", c_int), ("batch_size", c_int64),
                ("training_steps", c_int64), ("training_tokens", c_int64), ("seed", c_uint64),
                ("log_every", c_int64), ("checkpoint_every", c_int64), ("threads", c_int),
                ("encoder_bf16", c_int), ("skip_nonfinite_rows", c_int)]


class TrainMetrics(Structure):  # cterp_train_metrics
    _fields_ = [("step", c_int64), ("steps", c_int64), ("tokens", c_int64), ("loss", c_double),
                ("mse_loss", c_double), ("sparsity_loss", c_double), ("aux_loss", c_double),
                ("inner_mse_loss", c_double),
                ("mse", c_double), ("explained_variance", c_double), ("l0", c_double),
                ("l0_sparsity", c_double), ("l1_magnitude", c_double),
                ("dead_features", c_int64), ("dead_fraction", c_double),
                ("mean_log10_density", c_double), ("window_done", c_int),
                ("density_hist", c_int64 * 10), ("below_1e5", c_int64), ("below_1e6", c_int64),
                ("lr", c_double), ("sparsity_coefficient", c_double), ("threshold", c_double),
                ("tokens_per_s", c_double), ("elapsed_s", c_double), ("eta_s", c_double),
                ("source_tokens_per_s", c_double), ("sae_tokens_per_s", c_double),
                ("nonfinite_rows_skipped", c_int64), ("k", c_int)]


class WindowConfig(Structure):  # cterp_window_config
    _fields_ = [("context_size", c_int), ("prepend_bos", c_int), ("separator", c_int32),
                ("concat", c_int), ("exclude_special", c_int)]


class DatasetOpts(Structure):  # cterp_dataset_opts
    _fields_ = [("text_field", c_char_p), ("skip_malformed", c_int), ("token_bits", c_int)]


class StoreConfig(Structure):  # cterp_store_config
    _fields_ = [("windows", WindowConfig), ("data", DatasetOpts), ("model_batch", c_int),
                ("buffer_rows", c_int64), ("seed", c_uint64), ("run_rows", c_int64),
                ("fill_progress", c_void_p), ("fill_progress_user", c_void_p),
                ("overlap", c_int)]


class ActSource(Structure):  # cterp_act_source (filled and freed by the library only)
    _fields_ = [("d_in", c_int64), ("ctx", c_void_p), ("next", c_void_p),
                ("get_state", c_void_p), ("set_state", c_void_p), ("free", c_void_p),
                ("description", c_char * 256), ("d_out", c_int64), ("next_target", c_void_p),
                ("next_part", c_void_p),
                ("n_layers", c_int64)]


class ModelConfig(Structure):  # cterp_model_config (read through a pointer, never allocated here)
    _fields_ = [("arch", c_char * 24), ("n_layers", c_int), ("d_model", c_int),
                ("n_heads", c_int), ("n_kv_heads", c_int), ("head_dim", c_int), ("d_ff", c_int),
                ("n_vocab", c_int), ("n_ctx", c_int), ("n_rot", c_int), ("norm_eps", c_float),
                ("rope_base", c_float), ("tied_output", c_int), ("rope_neox", c_int),
                ("parallel", c_int), ("sliding_window", c_int), ("rope_scale", c_float),
                ("attn_softcap", c_float), ("final_softcap", c_float), ("mlp_gated", c_int)]


HOOK_FN = ctypes.CFUNCTYPE(c_int, c_char_p, POINTER(c_float), POINTER(c_int64), c_int, c_void_p)


class Hook(Structure):  # cterp_hook
    _fields_ = [("name", c_char_p), ("fn", c_void_p), ("user", c_void_p)]


class ForwardOpts(Structure):  # cterp_forward_opts
    _fields_ = [("hooks", POINTER(Hook)), ("n_hooks", c_int), ("stop_at_layer", c_int),
                ("logits", POINTER(c_float)), ("last_only", c_int)]


class SamplerParams(Structure):  # cterp_sampler_params
    _fields_ = [("temperature", c_float), ("top_p", c_float), ("seed", c_uint64)]


class Steer(Structure):  # cterp_steer
    _fields_ = [("sae", POINTER(Sae)), ("feature", c_int64), ("mode", c_int), ("value", c_float),
                ("f", POINTER(c_float)), ("f_edit", POINTER(c_float)), ("buf", POINTER(c_float)),
                ("cap_rows", c_int64), ("rows", c_int64), ("sum_before", c_double),
                ("n_rows", c_int64)]


class FeaturesConfig(Structure):  # cterp_features_config
    _fields_ = [("windows", WindowConfig), ("data", DatasetOpts), ("batch", c_int),
                ("n_windows", c_int64), ("hook", c_char_p), ("top_n", c_int),
                ("quantile_k", c_int), ("ctx_left", c_int), ("ctx_right", c_int),
                ("n_logits", c_int), ("seed", c_uint64), ("progress", c_void_p),
                ("progress_user", c_void_p), ("n_neighbours", c_int),
                ("cofire_max_latents", c_int64), ("loss_windows", c_int64), ("loss_top", c_int),
                ("view_windows", c_int)]


class DashboardOpts(Structure):  # cterp_dashboard_opts
    _fields_ = [("title", c_char_p), ("metrics", c_char_p), ("progress", c_void_p),
                ("progress_user", c_void_p)]


class ToyConfig(Structure):  # cterp_toy_config
    _fields_ = [("n_features", c_int), ("d", c_int), ("avg_active", c_double),
                ("decay", c_double), ("correlation", c_double), ("mag_min", c_float),
                ("mag_max", c_float), ("seed", c_uint64)]


# ---- prototypes ---------------------------------------------------------------------------------

def _proto(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)


P = c_void_p  # opaque handles: cterp_model*, cterp_trainer*, cterp_features*, ...
S = c_int     # cterp_status
_proto("cterp_last_error", c_char_p)
_proto("cterp_status_str", c_char_p, c_int)
_proto("cterp_clear_error", None)
_proto("cterp_isa_init", S)
_proto("cterp_isa_name", c_char_p)
# sae.h
_proto("cterp_arch_name", c_char_p, c_int)
_proto("cterp_arch_parse", S, c_char_p, POINTER(c_int))
_proto("cterp_sae_create", S, POINTER(POINTER(Sae)), c_int, c_int64, c_int64, c_int)
_proto("cterp_sae_free", None, POINTER(Sae))
_proto("cterp_sae_encode", S, POINTER(Sae), c_void_p, c_int64, c_void_p)
_proto("cterp_sae_decode", S, POINTER(Sae), c_void_p, c_int64, c_void_p)
_proto("cterp_sae_forward", S, POINTER(Sae), c_void_p, c_int64, c_void_p)
_proto("cterp_sae_save", S, POINTER(Sae), c_char_p, c_void_p)
_proto("cterp_sae_load", S, c_char_p, POINTER(POINTER(Sae)))
# train.h
_proto("cterp_train_config_default", None, POINTER(TrainConfig))
_proto("cterp_train_config_preset", S, POINTER(TrainConfig), c_char_p)
_proto("cterp_train_config_set", S, POINTER(TrainConfig), c_char_p, c_char_p)
_proto("cterp_train_config_load_json", S, POINTER(TrainConfig), c_char_p)
_proto("cterp_train_config_validate", S, POINTER(TrainConfig), c_int64)
_proto("cterp_train_rows_needed", c_int64, POINTER(TrainConfig))
_proto("cterp_train_config_d_sae", c_int64, POINTER(TrainConfig), c_int64)
_proto("cterp_train_config_steps", c_int64, POINTER(TrainConfig))
_proto("cterp_train_config_k_at", c_int, POINTER(TrainConfig), c_int64, c_int64)
_proto("cterp_act_source_file", S, POINTER(ActSource), c_char_p, c_int64, c_uint64)
_proto("cterp_act_source_free", None, POINTER(ActSource))
_proto("cterp_trainer_create", S, POINTER(P), POINTER(TrainConfig), POINTER(ActSource))
_proto("cterp_trainer_resume", S, POINTER(P), c_char_p, POINTER(ActSource))
_proto("cterp_trainer_free", None, P)
_proto("cterp_trainer_set_output", None, P, c_char_p, c_void_p, c_void_p)
_proto("cterp_trainer_run", S, P, c_int64)
_proto("cterp_trainer_checkpoint", S, P, c_char_p)
_proto("cterp_trainer_export", S, P, POINTER(POINTER(Sae)))
_proto("cterp_trainer_save", S, P, c_char_p)
_proto("cterp_trainer_set_meta", None, P, POINTER(SaeMeta))
_proto("cterp_trainer_step", c_int64, P)
_proto("cterp_trainer_sae", POINTER(Sae), P)
_proto("cterp_trainer_last_metrics", POINTER(TrainMetrics), P)
# acts.h / analysis.h
_proto("cterp_store_config_default", None, POINTER(StoreConfig))
_proto("cterp_act_store", S, POINTER(ActSource), P, c_char_p, c_char_p, POINTER(StoreConfig),
       c_int64)
_proto("cterp_act_pair_store", S, POINTER(ActSource), P, c_char_p, c_char_p, c_char_p,
       POINTER(StoreConfig), c_int64)
_proto("cterp_act_concat_store", S, POINTER(ActSource), P, POINTER(c_char_p), c_int, c_char_p,
       POINTER(StoreConfig), c_int64)
_proto("cterp_store_meta", None, POINTER(SaeMeta), c_char_p, c_char_p, c_char_p,
       POINTER(WindowConfig))
_proto("cterp_multi_store_open", S, POINTER(P), P, POINTER(c_char_p), c_int, c_char_p,
       POINTER(StoreConfig), c_int64)
_proto("cterp_multi_store_free", None, P)
_proto("cterp_multi_store_source", S, P, c_int, POINTER(ActSource))
# model.h
_proto("cterp_model_open", S, POINTER(P), c_char_p)
_proto("cterp_model_free", None, P)
_proto("cterp_model_config_of", POINTER(ModelConfig), P)
_proto("cterp_model_tokenizer", P, P)
_proto("cterp_model_weight_type", c_char_p, P)
_proto("cterp_model_n_hook_points", c_int, P)
_proto("cterp_model_hook_point", c_char_p, P, c_int, c_char_p, c_size_t)
_proto("cterp_model_hook_info", S, P, c_char_p, POINTER(c_int), POINTER(c_int))
_proto("cterp_hook_name", S, c_int, c_char_p, c_char_p, c_size_t)
_proto("cterp_model_forward", S, P, c_void_p, c_int, c_int, POINTER(ForwardOpts))
_proto("cterp_generate", S, P, c_void_p, c_int, c_int, POINTER(SamplerParams),
       POINTER(ForwardOpts), c_void_p, c_void_p, POINTER(POINTER(c_int32)), POINTER(c_int))
# tokenizer.h
_proto("cterp_tokenize", S, P, c_char_p, c_size_t, c_int, c_int, POINTER(POINTER(c_int32)),
       POINTER(c_size_t))
_proto("cterp_detokenize", S, P, c_void_p, c_size_t, c_int, POINTER(c_void_p), POINTER(c_size_t))
_proto("cterp_tokenizer_is_special", c_int, P, c_int32)
_proto("cterp_tokenizer_n_vocab", c_int32, P)
# features.h / dashboard.h
_proto("cterp_features_config_default", None, POINTER(FeaturesConfig))
_proto("cterp_features_collect", S, P, POINTER(Sae), c_char_p, POINTER(FeaturesConfig), c_char_p,
       c_char_p, POINTER(P))
_proto("cterp_features_free", None, P)
_proto("cterp_features_save", S, P, c_char_p)
_proto("cterp_features_load", S, c_char_p, POINTER(P))
_proto("cterp_features_on_tokens", S, P, POINTER(Sae), c_char_p, c_void_p, c_int, c_void_p)
_proto("cterp_token_display", c_char_p, P, c_int32, c_char_p, c_size_t)
_proto("cterp_steer_init", S, POINTER(Steer), POINTER(Sae), c_int64, c_int, c_float)
_proto("cterp_steer_free", None, POINTER(Steer))
_proto("cterp_dashboard_write", S, P, c_char_p, POINTER(DashboardOpts))
# toy.h
_proto("cterp_toy_config_default", None, POINTER(ToyConfig))
_proto("cterp_toy_create", S, POINTER(P), POINTER(ToyConfig))
_proto("cterp_toy_free", None, P)
_proto("cterp_toy_features", POINTER(c_float), P)
_proto("cterp_toy_sample", None, P, c_uint64, c_void_p, c_int64, c_void_p)
_proto("cterp_toy_source", S, POINTER(ActSource), P)
_proto("cterp_mmcs", c_double, c_void_p, c_int, c_void_p, c_int64, c_int, POINTER(c_double))

_libc = ctypes.CDLL(None)
_libc.free.argtypes = [c_void_p]
_libc.free.restype = None


def c_free(p):
    """free() a buffer the library malloc'd for the caller (token ids, text)."""
    _libc.free(ctypes.cast(p, c_void_p))


def steer_hook_address():
    return ctypes.cast(lib.cterp_steer_hook, c_void_p).value


def last_error():
    return lib.cterp_last_error().decode("utf-8", "replace")


def check(status, what=None):
    """Raises CterpError with the library's message when status is not CTERP_OK."""
    if status:
        msg = last_error() or lib.cterp_status_str(status).decode()
        if what and what not in msg:
            msg = "%s: %s" % (what, msg)
        lib.cterp_clear_error()
        raise CterpError(msg, status)


def b(s):
    """str/path -> bytes for a const char * argument (None stays NULL)."""
    if s is None:
        return None
    return os.fsencode(s)


check(lib.cterp_isa_init(), "CTERP_ISA")
