"""``python -m eo_missing_qgis.core predict``: the engine for headless and batch use, no QGIS;
``python -m eo_missing_qgis.core diagnostics``: versions and execution providers, for bug reports.

Each ``--input`` starts a layer; the options after it (``--modality``, ``--band``, ``--layout``,
``--time-index``, ``--bands``, ``--encoding``, ``--dates``) describe that layer. A netCDF file given whole
stands for all its variables. User errors print one clear message and exit with status 2.
"""

from __future__ import annotations

import argparse
import signal
import sys

from .card import ModelCardError
from .definitions import DEVICES, MODALITIES, Device, TimeLayout
from .errors import Cancelled, DependencyError
from .raster_inputs import RasterInput

FINEST = "finest"
_LAYER_FIELDS = ("modality", "band", "layout", "time_index", "bands", "encoding", "dates")


class _NewInput(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        namespace.inputs = [*(namespace.inputs or []), {"path": values}]


class _InputField(argparse.Action):
    """Sets one field of the most recent ``--input``."""

    def __call__(self, parser, namespace, values, option_string=None):
        if not namespace.inputs:
            parser.error(f"{option_string} must follow the --input it describes")
        namespace.inputs[-1][self.dest] = values


def _bands(text: str) -> list[str]:
    return [b.strip() for b in text.split(",") if b.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``predict`` with one option group per ``--input``."""
    parser = argparse.ArgumentParser(prog="python -m eo_missing_qgis.core",
                                     description="Run EO models on rasters without QGIS.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="predict a model over raster layers",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="ONNX model with a model card (used wherever the layers are; the log "
                                       "warns outside its training footprint)")
    which.add_argument("--task", help="a bundled task (e.g. crop_type): its model is chosen from the layers' "
                                      "sensors and location, as in QGIS")
    p.add_argument("--input", dest="inputs", action=_NewInput, required=True, metavar="PATH",
                   help='a GDAL raster, e.g. cube.nc or NETCDF:"cube.nc":S2-L2A-B04 (repeatable)')
    p.add_argument("--modality", action=_InputField, choices=MODALITIES)
    p.add_argument("--band", action=_InputField, help="the one spectral band the layer holds")
    p.add_argument("--layout", action=_InputField, choices=tuple(TimeLayout))
    p.add_argument("--time-index", dest="time_index", action=_InputField, type=int,
                   help="time step of a one-date layer (0 = oldest), or first step to use; default: "
                        "the latest steps the model needs (Processing's first step 1 is index 0)")
    p.add_argument("--bands", action=_InputField, type=_bands, help="band order, comma separated")
    p.add_argument("--encoding", action=_InputField, help="encoding preset name, e.g. 'dB'")
    p.add_argument("--dates", action=_InputField, type=_bands,
                   help="the layer's date (YYYY-MM[-DD]), or one per raster band of a one-band layer, "
                        "comma separated; places it on the model's months")
    p.add_argument("--out", required=True, help="output GeoTIFF (confidence goes next to it)")
    p.add_argument("--reference", default=FINEST, help="index of the input, or a raster path, whose grid "
                   "the outputs use (default: the input with the finest pixels)")
    p.add_argument("--device", default=Device.AUTO, choices=DEVICES,
                   help="auto: a GPU when one works, else the CPU, saying why; gpu: fail without one; "
                        "tensorrt and coreml only when chosen")
    p.add_argument("--threads", type=int)
    p.add_argument("--tile-size", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--memory-mb", type=float, default=512.0)
    p.add_argument("--probabilities", action="store_true", help="also write all class probabilities")
    p.add_argument("--quiet", action="store_true", help="no progress or messages on stderr")
    from .scale.openeo_graph import add_arguments

    add_arguments(sub.add_parser("openeo-graph", help="write the openEO process graph running a model "
                                 "as a UDF next to the data (no backend is contacted)"))
    d = sub.add_parser("diagnostics", help="print versions, paths and execution providers for a bug report")
    d.add_argument("--model", help="open this ONNX model first, to report the provider it runs on")
    d.add_argument("--device", default=Device.AUTO, choices=DEVICES, help="device to open --model with")
    return parser


def _progress(fraction: float) -> None:
    sys.stderr.write(f"\r{fraction * 100:5.1f} %")
    sys.stderr.flush()
    if fraction >= 1:
        sys.stderr.write("\n")


def diagnostics(model: str | None, device: str) -> int:
    """Print the diagnostics; with ``model``, open it first so the provider section is filled."""
    from .diagnostics import diagnostics_text

    status = 0
    if model:
        from .session import open_session

        try:
            open_session(model, device)
        except (ValueError, ModelCardError, DependencyError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 2
    print(diagnostics_text())
    return status


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a user error)."""
    args = build_parser().parse_args(argv)
    if args.command == "openeo-graph":
        return _openeo_graph(args)
    if args.command == "diagnostics":
        return diagnostics(args.model, args.device)
    from .engine import RunOptions, run_model
    from .interrupts import cancel_on_signals

    reference = None if args.reference == FINEST else \
        int(args.reference) if args.reference.isdigit() else args.reference

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    with cancel_on_signals() as cancel:
        try:  # the layers and options are checked as they are built: their errors are user errors too
            inputs = [RasterInput(**{k: v for k, v in d.items() if k == "path" or k in _LAYER_FIELDS})
                      for d in args.inputs]
            options = RunOptions(tile_size=args.tile_size, memory_mb=args.memory_mb,
                                 batch_size=args.batch_size, device=args.device, threads=args.threads,
                                 write_probabilities=args.probabilities, reference=reference)
            model = args.model or _bundled(args.task, inputs, log)
            result = run_model(model, inputs, args.out, options=options, cancel=cancel,
                               progress=None if args.quiet else _progress, log=None if args.quiet else log)
        except Cancelled:
            print(f"error: {cancel.describe()}; no output was written", file=sys.stderr)
            return 128 + (cancel.signum or signal.SIGINT)  # the shell's code for a signal's stop
        except (ValueError, ModelCardError, DependencyError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    for key, path in result.outputs.items():
        print(f"{key}: {path}")
    return 0


def _bundled(task: str, inputs: list[RasterInput], log) -> str:
    """The bundled model of ``task`` fitting the layers' sensors and place (:func:`.model_index.select_model`,
    as Processing and the panel choose), said in the log."""
    from .card import read_card
    from .errors import InputError
    from .footprint import layers_outline
    from .model_index import load_index, select_model
    from .raster_inputs import expand, match_inputs
    from .recognition import recognise

    layers, _ = expand(inputs)  # headers read once, reused by the checks below

    def problems(m) -> str:
        try:
            match_inputs(read_card(m.file), layers)
        except InputError as exc:
            return str(exc)
        return ""

    available = {m for inp in layers for m in recognise(inp, inp.header).modalities}
    model, reason = select_model(load_index(), task, available, problems,
                                 layers_outline([i.path for i in layers], {i.path: i.header for i in layers}))
    log(f"Model: {model.title} ({model.file.name}).")
    log(reason)
    return str(model.file)


def _openeo_graph(args: argparse.Namespace) -> int:
    from .scale.openeo_graph import write_graph

    try:
        print(write_graph(args))
    except (ValueError, ModelCardError, DependencyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
