"""Which ONNX Runtime execution provider runs a model, and why the GPU is not used when it is not.

ONNX Runtime does not fail when a GPU provider cannot start: with CUDA or cuDNN libraries missing it
only logs a warning and quietly builds a CPU session. So each provider is tried on its own, the
session's first provider is checked, and when it is not the one asked for, the missing library is
looked for so that the user reads one line saying what to install.

Order: CUDA, then DirectML (Windows), then CPU. TensorRT and CoreML run only when asked for
(device ``tensorrt`` / ``coreml``): TensorRT builds engines for minutes on first use, and CoreML
differs numerically enough to be a choice, not a default. ``auto`` falls back to the CPU and says
why; any other device that cannot run fails with that reason.

onnxruntime is passed in, never imported here, so the decisions are tested with a fake module.
"""

from __future__ import annotations

import ctypes
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .definitions import DEVICES
from .errors import ModelError

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
DIRECTML = "DmlExecutionProvider"
COREML = "CoreMLExecutionProvider"
CPU = "CPUExecutionProvider"
#: Short names used in messages.
SHORT = {TENSORRT: "TensorRT", CUDA: "CUDA", DIRECTML: "DirectML", COREML: "CoreML", CPU: "CPU"}


@dataclass
class ProviderChoice:
    """The provider that runs (``''`` when none could), and one line saying why the GPU is not used
    with the fix (``''`` when it is used, or when the CPU was asked for)."""

    device: str
    provider: str
    note: str = ""

    def describe(self) -> str:
        """One line for logs and diagnostics: device asked, provider that ran, and why."""
        ran = SHORT.get(self.provider, self.provider) if self.provider else "nothing (the model did not load)"
        return f"device {self.device}: ran on {ran}" + (f"; {self.note}" if self.note else "")


_last: list[ProviderChoice] = []


def last_choice() -> ProviderChoice | None:
    """The provider decision of the last model opened in this process (for diagnostics)."""
    return _last[-1] if _last else None


def _remember(choice: ProviderChoice) -> ProviderChoice:
    _last[:] = [choice]
    return choice


def wanted(device: str, platform: str = sys.platform) -> list[str]:
    """GPU providers ``device`` asks for, best first (the CPU is not listed)."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device == "cpu":
        return []
    if device == "tensorrt":
        return [TENSORRT]
    if device == "coreml":
        return [COREML]
    return [CUDA, DIRECTML] if platform == "win32" else [CUDA]


def session_providers(provider: str, available: list[str]) -> list[str]:
    """The list given to ONNX Runtime for one attempt: TensorRT hands the operators it lacks to CUDA."""
    if provider == TENSORRT and CUDA in available:
        return [TENSORRT, CUDA]
    return [provider]


def _package(ort: Any) -> str:
    return getattr(ort, "package_name", "") or "onnxruntime"


def no_provider_reason(ort: Any, device: str, available: list[str], platform: str = sys.platform
                       ) -> tuple[str, str]:
    """(why, fix) when this onnxruntime has none of the providers ``device`` asks for."""
    build = f"{_package(ort)} {getattr(ort, '__version__', '')}".strip()
    if device == "tensorrt":
        return (f"no TensorRT provider in this onnxruntime ({build})",
                "install onnxruntime-gpu and TensorRT 10")
    if device == "coreml":
        return f"no CoreML provider in this onnxruntime ({build})", "CoreML needs onnxruntime on macOS"
    if COREML in available:
        return "the only GPU provider here is CoreML, which is opt-in", "choose the device 'coreml'"
    fix = ("install onnxruntime-gpu for NVIDIA, or onnxruntime-directml for any DirectX 12 GPU"
           if platform == "win32" else "install onnxruntime-gpu for an NVIDIA GPU")
    return f"no GPU provider in this onnxruntime ({build}, CPU build)", fix


def can_load(name: str) -> bool:
    """Whether the dynamic library ``name`` loads (or is already loaded) in this process."""
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def cuda_majors(ort: Any) -> tuple[int, int]:
    """(CUDA, cuDNN) major versions this onnxruntime-gpu was built for: CUDA 12 / cuDNN 9 since
    ONNX Runtime 1.19, CUDA 11.8 / cuDNN 8 before."""
    version = str(getattr(ort, "cuda_version", "") or "12")
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 12
    return major, 8 if major < 12 else 9


def cuda_libraries(ort: Any, platform: str = sys.platform) -> list[tuple[str, str, str]]:
    """(what, library file, fix) for every library the CUDA provider needs, driver first."""
    cuda, cudnn = cuda_majors(ort)
    pip = "onnxruntime-gpu[cuda,cudnn]"
    if platform == "win32":
        files = ("nvcuda.dll", f"cudart64_{cuda}.dll", f"cublasLt64_{cuda}.dll", f"cudnn64_{cudnn}.dll")
    else:
        files = ("libcuda.so.1", f"libcudart.so.{cuda}", f"libcublasLt.so.{cuda}", f"libcudnn.so.{cudnn}")
    return [
        ("the NVIDIA driver", files[0], "install the NVIDIA driver, or use the CPU package onnxruntime"),
        (f"the CUDA {cuda} runtime", files[1], f"install {pip} or CUDA {cuda}"),
        (f"cuBLAS {cuda}", files[2], f"install {pip} or CUDA {cuda}"),
        (f"cuDNN {cudnn}", files[3], f"install {pip} or cuDNN {cudnn}"),
    ]


def fallback_reason(ort: Any, provider: str, platform: str = sys.platform,
                    loads: Callable[[str], bool] = can_load) -> tuple[str, str]:
    """(why, fix) for a provider that is in this onnxruntime but silently fell back to the CPU."""
    name = SHORT[provider]
    if provider in (CUDA, TENSORRT):
        for what, lib, fix in cuda_libraries(ort, platform):
            if not loads(lib):
                return f"{name} provider present but {what} not found ({lib})", fix
    if provider == TENSORRT:
        lib = "nvinfer_10.dll" if platform == "win32" else "libnvinfer.so.10"
        if not loads(lib):
            return (f"TensorRT provider present but TensorRT 10 not found ({lib})",
                    "install TensorRT 10 and put its libraries on the library path")
    hint = {
        DIRECTML: "update the GPU driver; DirectML needs a DirectX 12 GPU",
        COREML: "CoreML needs macOS 10.15 or later",
    }.get(provider, "check the GPU driver and ONNX Runtime's own message in the console")
    return f"{name} provider present but ONNX Runtime could not start it", hint


_preloaded: weakref.WeakSet = weakref.WeakSet()


def preload_cuda(ort: Any) -> None:
    """Load the CUDA/cuDNN libraries of pip's nvidia-* wheels (``onnxruntime.preload_dlls``,
    ONNX Runtime >= 1.21) so the CUDA provider finds them; older versions lack it. Once per
    process: the libraries stay loaded, and a second call would only repeat its printed warnings."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None or ort in _preloaded:
        return
    _preloaded.add(ort)
    try:
        preload()
    except (OSError, RuntimeError):  # a missing library is diagnosed after the session falls back
        return


def configure(ort: Any, provider: str, options: Any) -> None:
    """Session options a provider requires: DirectML supports neither memory patterns nor parallel
    execution (its documentation: both must be disabled or session creation fails)."""
    if provider == DIRECTML:
        options.enable_mem_pattern = False
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def summary(failures: list[tuple[str, str]], used: str = "") -> str:
    """One line: every reason, where it runs instead (when it runs), and the fixes."""
    whys = "; ".join(why for why, _ in failures)
    fixes = "; ".join(dict.fromkeys(fix for _, fix in failures))
    return whys + (f"; running on {SHORT.get(used, used)}" if used else "") + f" ({fixes})"


def open_inference_session(ort: Any, path: str, device: str, make_options: Callable[[], Any],
                           platform: str = sys.platform, loads: Callable[[str], bool] = can_load
                           ) -> tuple[Any, ProviderChoice]:
    """Open ``path`` on the best provider ``device`` allows; see the module docstring.

    ``make_options`` returns fresh ``SessionOptions`` for each attempt, so options one provider
    needs never reach the next. Raises :class:`ModelError` when the model cannot load at all, or
    when a GPU was asked for (any device but ``auto`` and ``cpu``) and none could run.
    """
    name = Path(path).name
    available = list(ort.get_available_providers())
    want = wanted(device, platform)
    present = [p for p in want if p in available]
    failures: list[tuple[str, str]] = []
    if want and not present:
        failures.append(no_provider_reason(ort, device, available, platform))
    for provider in present:
        if provider in (CUDA, TENSORRT):
            preload_cuda(ort)
        options = make_options()
        configure(ort, provider, options)
        try:
            session = ort.InferenceSession(path, sess_options=options,
                                           providers=session_providers(provider, available))
        except Exception as exc:  # ORT raises its own, unexported exception types
            failures.append((f"{SHORT[provider]} provider failed to start ({_first_line(exc)})",
                             "check the GPU driver and memory"))
            continue
        if session.get_providers()[0] == provider:
            note = summary(failures, provider) if failures else ""
            return session, _remember(ProviderChoice(device, provider, note))
        failures.append(fallback_reason(ort, provider, platform, loads))
    if device not in ("auto", "cpu"):
        _remember(ProviderChoice(device, "", summary(failures)))
        raise ModelError(f"{name}: the device '{device}' was asked for but cannot be used: "
                         f"{summary(failures)}. Choose the device 'auto' or 'cpu' to run on the CPU.")
    try:
        session = ort.InferenceSession(path, sess_options=make_options(), providers=[CPU])
    except Exception as exc:  # ORT raises its own, unexported exception types
        _remember(ProviderChoice(device, "", _first_line(exc)))
        raise ModelError(f"{name} cannot be loaded by ONNX Runtime: {_first_line(exc)}") from None
    return session, _remember(ProviderChoice(device, CPU, summary(failures, CPU) if failures else ""))


def gpu_batch_note(provider: str, batch: int, window_pixels: int) -> str:
    """What the batch size means on a GPU ('' on the CPU): each call pays a copy to the device and
    kernel launches, so one call per window is best; the window already fits the memory budget."""
    if provider == CPU:
        return ""
    if batch >= window_pixels:
        return f"on the GPU ({SHORT.get(provider, provider)}) each window of up to {window_pixels} pixels " \
               "is one batch"
    calls = -(-window_pixels // batch)
    return (f"batches of {batch} pixels split each window into up to {calls} GPU calls; leave the batch "
            "size unset for one call per window")
