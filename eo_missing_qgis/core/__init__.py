"""QGIS-free core: model card, units and preprocessing, tiling, ONNX Runtime, raster I/O.

Nothing here imports ``qgis``; the Processing algorithms, the GUI panel and the CLI call it.
"""
