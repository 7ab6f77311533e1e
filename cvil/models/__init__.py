"""cvil.models: the OSCAR+ VQA model (`OscarVQA`), its config and checkpoint I/O."""

from cvil.models.checkpoint import (
    CheckpointError,
    LoadReport,
    load_model,
    save_oscar_checkpoint,
    save_safetensors_checkpoint,
)
from cvil.models.config import config_from_dict, config_to_dict, oscar_config
from cvil.models.oscar import OscarEncoding, OscarOutput, OscarVQA, instance_bce_with_logits

__all__ = [
    "CheckpointError",
    "LoadReport",
    "OscarEncoding",
    "OscarOutput",
    "OscarVQA",
    "config_from_dict",
    "config_to_dict",
    "instance_bce_with_logits",
    "load_model",
    "oscar_config",
    "save_oscar_checkpoint",
    "save_safetensors_checkpoint",
]
