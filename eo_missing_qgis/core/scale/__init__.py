"""Scale-out wrappers of :func:`..block.predict_block`: Dask over xarray data, openEO as a UDF.

dask, distributed, xarray, rioxarray and openeo are optional: imported only by the function that
needs them, never by the plugin, and not bundled in its zip.
"""
