"""cterp: sparse-autoencoder interpretability on GGUF language models, from Python.

A ctypes binding of the C library libcterp.so (found next to this package, through $CTERP_LIB,
or in the source tree's build/). mlxterp's interface (InterpretableModel, SAEConfig, train_sae,
trace) and SAELens's (SAE.load_from_disk, encode, decode, cfg, W_enc...). docs/python.md maps
every name to its C call.
"""
from ._lib import CterpError, library_path
from .analysis import dashboard, features
from .config import SAEConfig
from .model import Activations, FeatureActivations, InterpretableModel, Trace, hook_alias
from .sae import SAE
from .toy import Toy
from .train import train

__version__ = "0.1"


def isa():
    """The kernel variant in use ("avx2", ...): cterp_isa_name."""
    from ._lib import lib
    return lib.cterp_isa_name().decode()


__all__ = ["CterpError", "SAE", "SAEConfig", "InterpretableModel", "Trace", "Activations",
           "FeatureActivations", "Toy", "train", "features", "dashboard", "hook_alias", "isa",
           "library_path"]
