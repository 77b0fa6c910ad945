"""Steering the infinite canvas (paper Section 4.3, Appendix L): spatial style fusion, cyclic
panoramas and regional resampling, described by one ``Scene``.

    from infinitygan.scene import Scene, StyleCentre, Point, Box, Mask, Resample, render, render_to_file
"""
from .api import SceneSource, render, render_to_file, scene_region
from .field import Box, Mask, Point
from .scene import Resample, Scene, StyleCentre, load_mask, load_zg, styles_along_x

__all__ = ["Box", "Mask", "Point", "Resample", "Scene", "SceneSource", "StyleCentre", "load_mask", "load_zg", "render",
           "render_to_file", "scene_region", "styles_along_x"]
