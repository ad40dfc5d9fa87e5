"""ONNX Runtime sessions for carded models: provider choice, fallback, and card/graph checks.

onnxruntime is imported only when a session is opened, so the rest of ``core`` (and the plugin's
model browser) works where it is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .card import ModelCard, read_card
from .definitions import Device, Task
from .errors import ModelError, missing_dependency
from .providers import open_inference_session
from .runtime_version import check_runtime


def onnxruntime_module():
    """onnxruntime, imported on first use; a clear error when it is missing."""
    try:
        import onnxruntime
    except ImportError:
        raise missing_dependency("onnxruntime", "run models") from None
    return onnxruntime


@dataclass
class ModelSession:
    """A loaded model: its card, the provider actually used, and why the GPU is not used ('' when
    it is, or when the CPU was asked for)."""

    path: str
    card: ModelCard
    session: Any
    provider: str
    provider_note: str = ""
    #: Peak memory one pixel of a batch costs inside the network (activations, runtime buffers),
    #: measured by :func:`probe_output` for per-pixel models; None where it cannot be measured.
    bytes_per_pixel: float | None = None

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the graph on ``feeds`` (tensor name -> array); returns the card's output first."""
        return self.session.run([self.card.output.tensor], feeds)


def open_session(model_path: str | Path, device: Device = Device.AUTO,
                 threads: int | None = None) -> ModelSession:
    """Load ``model_path`` on the provider ``device`` allows (:mod:`.providers`): ``auto`` falls
    back to the CPU and says why in ``provider_note``, ``gpu`` fails with that reason."""
    path = str(model_path)
    if not Path(path).is_file():
        raise ModelError(f"model file {path} does not exist")
    card = read_card(path)
    ort = onnxruntime_module()
    check_runtime(path, ort.__version__)
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, not {threads}")

    def make_options():
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # ONNX Runtime's CPU arena stays on: without it a 128 MB budget peaked at 251 MB above the
        # loaded model, with it at 100 MB (crop_type_s2, scripts/bench_memory_budget.py, 500²).
        # Idle ORT threads spin by default, taking the CPU the read-ahead thread needs between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options

    session, choice = open_inference_session(ort, path, device, make_options)
    check_graph(card, session, Path(path).name)
    loaded = ModelSession(path, card, session, choice.provider, provider_note=choice.note)
    if not card.spatial:  # a spatial model's output is checked on every tile (block.run_block)
        probe_output(loaded)
    return loaded


def probe_output(model: ModelSession) -> None:
    """Run a probe batch of several pixels and refuse an output not shaped (pixels, values).

    Graph shapes are often symbolic, so :func:`check_graph` cannot see an output laid out
    (values, batch) or one per time step; with one pixel such outputs even look right. The probe
    has more pixels than the model has values, so (values, batch) never passes for (batch, values).
    """
    card = model.card
    values = len(card.output.classes) if card.task == Task.CLASSIFICATION else 1
    pixels = values + 2
    feeds = zero_feeds(card, pixels)
    try:
        shape = np.shape(model.run(feeds)[0])
    except Exception as exc:  # any runtime failure: the model cannot run
        raise ModelError(f"{Path(model.path).name}: the model fails on a probe batch of {pixels} "
                         f"pixels: {exc}") from None
    if shape not in ((pixels, values), (pixels,) * (values == 1)):
        raise ModelError(f"{Path(model.path).name}: for a probe batch of {pixels} pixels the model "
                         f"returned {shape}, not ({pixels}, {values}): one row of {values} "
                         f"value{'s' * (values > 1)} per pixel, as its card declares")
    feeds = zero_feeds(card, CALIBRATION_PIXELS)
    grown = peak_growth(lambda: model.run(feeds))
    # Inside a run a pixel costs up to 1.6 times what this isolated batch shows (batches of
    # several sizes in the runtime's arena, the result arrays): doubled, the budget holds.
    model.bytes_per_pixel = 2 * grown / CALIBRATION_PIXELS if grown else None


def zero_feeds(card: ModelCard, pixels: int) -> dict[str, np.ndarray]:
    """Zeros for every input of a per-pixel card, sensors and context inputs, for ``pixels`` pixels."""
    feeds = {s.tensor: np.zeros((pixels, card.time.steps, len(s.bands)), dtype=np.float32)
             for s in card.inputs}
    for c in card.context:
        shape = [pixels if d == "batch" else d for d in c.shape(card.time.steps)]
        feeds[c.tensor] = np.zeros(shape, dtype=np.float32)
    return feeds


#: Pixels of the run that measures a per-pixel model's memory (a few MB for the bundled models).
CALIBRATION_PIXELS = 2048


def peak_growth(run: Callable[[], object]) -> int | None:
    """Bytes by which the process's peak resident memory grew while ``run`` ran; None where that
    cannot be measured (Linux's /proc only). Resets the peak (``VmHWM``, ``ru_maxrss``) first."""

    def kb(key: str) -> int:
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key))

    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # the peak becomes the current resident size
        before = kb("VmRSS:")
    except (OSError, StopIteration, ValueError):
        return None
    run()
    return (kb("VmHWM:") - before) * 1024


def check_graph(card: ModelCard, session, name: str) -> None:
    """Refuse a graph whose inputs/outputs disagree with its card (names, time steps, bands)."""
    graph_in = {i.name: i.shape for i in session.get_inputs()}
    graph_out = {o.name: o.shape for o in session.get_outputs()}
    problems = []
    for spec in card.inputs:
        if spec.tensor not in graph_in:
            problems.append(f"the card's input '{spec.tensor}' is not an input of the graph "
                            f"(graph inputs: {', '.join(graph_in)})")
            continue
        shape = graph_in[spec.tensor]
        expected = [None, card.time.steps, len(spec.bands)]
        dims = "5 (batch, time, bands, height, width)" if card.spatial else "3 (batch, time, bands)"
        if len(shape) != (5 if card.spatial else 3):
            problems.append(f"input '{spec.tensor}' has {len(shape)} dimensions in the graph, the card's "
                            f"layout {spec.layout} needs {dims}")
            continue
        for axis, what in ((1, "time steps"), (2, "bands")):
            if isinstance(shape[axis], int) and shape[axis] != expected[axis]:
                problems.append(f"input '{spec.tensor}' has {shape[axis]} {what} in the graph but "
                                f"{expected[axis]} in the card")
    for c in card.context:
        shape = graph_in.get(c.tensor)
        want = c.shape(card.time.steps)
        if shape is None:
            problems.append(f"the card's context input '{c.tensor}' is not an input of the graph")
        elif len(shape) != len(want) or any(isinstance(g, int) and isinstance(w, int) and g != w
                                            for g, w in zip(shape, want, strict=True)):
            problems.append(f"context input '{c.tensor}' is {shape} in the graph, the card says {want}")
    extra = sorted(set(graph_in) - {s.tensor for s in card.inputs} - {c.tensor for c in card.context})
    if extra:
        problems.append(f"the graph needs inputs the card does not describe: {', '.join(extra)}")
    out = card.output.tensor
    if out not in graph_out:
        problems.append(f"the card's output '{out}' is not an output of the graph "
                        f"(graph outputs: {', '.join(graph_out)})")
    else:
        shape = graph_out[out]
        n = len(card.output.classes) if card.task == Task.CLASSIFICATION else 1
        # Per pixel (batch, values); spatial (batch, values, height, width).
        axis, ndim = (1, 4) if card.spatial else (-1, 2)
        if card.spatial and shape and len(shape) != ndim:
            problems.append(f"output '{out}' has {len(shape)} dimensions in the graph, a spatial model "
                            "needs 4 (batch, values, height, width)")
        elif len(shape) >= 2 and isinstance(shape[axis], int) and shape[axis] != n:
            problems.append(f"output '{out}' has {shape[axis]} values per pixel in the graph but the card "
                            f"declares {n}")
    if problems:
        raise ModelError(f"{name}: the model card does not match the graph:\n- " + "\n- ".join(problems))
