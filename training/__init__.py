"""Training package: multi-modal teacher and single-modality students on real EO time series.

Imports ``eo_missing_qgis.core`` (units, card, preprocessing) so that training and QGIS inference
share one implementation of unit decoding and scaling; the plugin never imports this package.
"""

__version__ = "0.1.0"
