"""The authors' release: their checkpoint format read safely and converted to ours
(``checkpoint``), and the ``convert-official`` command (``cli``)."""
from .checkpoint import generator_from_official_state, infer_config, load_official

__all__ = ["generator_from_official_state", "infer_config", "load_official"]
