"""Names vulture cannot see being used: called by QGIS, Lightning, PyTorch or pytest by name, or
attributes set on objects of other libraries. Read by `vulture` in scripts/test.sh, never imported.
Anything else vulture reports is dead code: remove it rather than adding it here."""

# Enum members offered as choices (Processing, the CLI), never named in code.
CPU
GPU

# Options set on onnxruntime / onnx / QGIS objects.
_.intra_op_num_threads
_.inter_op_num_threads
_.log_severity_level
_.ir_version
_.op_type
_.dpi
_.generateWorldFile
_.exportMetadata

# QGIS API called by QGIS.
_.postProcessLayer
_.displayName
_.groupId
_.createInstance
_.initAlgorithm
_.processAlgorithm
_.longName
_.icon
_.svgIconPath
_.loadAlgorithms
_.supportedOutputRasterLayerExtensions
_.checkValueIsAcceptable
_.mapCanvas

# PyTorch / Lightning hooks, with their fixed signatures.
_.forward
_.training_step
_.validation_step
_.configure_optimizers
_.on_validation_epoch_end
_.on_fit_end
_.on_train_epoch_end
batch_idx

# pytest fixture requested for its side effect (a running QgsApplication).
qgis_app
cpu_build

# Kept for its lifetime, not read: a VRT's source dataset stays open while the VRT reads from it.
_._source

# The fake onnxruntime mirrors the real module's names.
ORT_PARALLEL

# The openEO UDF entry point: the backend calls it by name.
apply_datacube
