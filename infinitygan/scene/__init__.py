"""Steering the infinite canvas (paper Section 4.3, Appendix L): spatial style fusion, cyclic
panoramas and regional resampling, described by one ``Scene``.

    from infinitygan.scene import Scene, StyleCentre, Point, Box, Mask, Resample, render, render_to_file
"""
from ..lazy import exports as _exports

_EXPORTS = {"SceneSource": "api", "render": "api", "render_to_file": "api", "scene_region": "api", "Box": "field",
            "Mask": "field", "Point": "field", "Resample": "scene", "Scene": "scene", "StyleCentre": "scene",
            "load_mask": "scene", "load_zg": "scene", "styles_along_x": "scene"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _exports(__name__, _EXPORTS)
