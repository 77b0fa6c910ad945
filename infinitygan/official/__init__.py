"""The authors' release: their checkpoint format read safely and converted to ours
(``checkpoint``), and the ``convert-official`` command (``cli``)."""
from ..lazy import exports as _exports

_EXPORTS = {"generator_from_official_state": "checkpoint", "infer_config": "checkpoint",
            "load_official": "checkpoint"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _exports(__name__, _EXPORTS)
