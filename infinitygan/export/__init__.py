"""Exporting the tile renderer (``infinitygan export``): the generator split the way the engine
runs it (mapping network; structure synthesizer per GS window; texture synthesizer per tile) as
ONNX graphs with dynamic batch and spatial sizes, plus a JSON manifest of the geometry,
coordinates and tile rules (``onnx``); the command in ``cli``."""
