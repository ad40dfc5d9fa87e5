"""Execution provider choice: the decisions against a fake onnxruntime for every provider list and
fallback a user's machine can have, and the real ONNX Runtime of this (CPU-only) machine."""

from __future__ import annotations

import subprocess
import sys

import onnxruntime
import pytest

from eo_missing_qgis.core.definitions import DEVICES
from eo_missing_qgis.core.engine import RunOptions, run_model
from eo_missing_qgis.core.errors import ModelError
from eo_missing_qgis.core.providers import (
    COREML,
    CPU,
    CUDA,
    DIRECTML,
    TENSORRT,
    cuda_libraries,
    gpu_batch_note,
    last_choice,
    open_inference_session,
    wanted,
)
from eo_missing_qgis.core.raster_inputs import RasterInput
from eo_missing_qgis.core.session import open_session
from tests.engine_data import cube_path
from tests.tiny_models import card_dict, tiny_onnx

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
OK, FALLBACK = "ok", "fallback"


class FakeSession:
    def __init__(self, providers_used: list[str]):
        self.providers_used = providers_used

    def get_providers(self) -> list[str]:
        return self.providers_used


class FakeOrt:
    """Stands in for onnxruntime: the providers it lists, and what each does when asked for (starts,
    falls back silently to the next listed provider or the CPU as ONNX Runtime does when libraries
    are missing, or raises)."""

    class ExecutionMode:
        ORT_SEQUENTIAL, ORT_PARALLEL = "sequential", "parallel"

    class SessionOptions:
        def __init__(self) -> None:
            self.enable_mem_pattern = True
            self.execution_mode = "parallel"

    package_name = "onnxruntime-gpu"
    __version__ = "1.22.0"

    def __init__(self, available: list[str], behaviour: dict[str, object] | None = None,
                 preload: bool = True, cuda_version: str = "12.8"):
        self.available = available
        self.behaviour = behaviour or {}
        self.cuda_version = cuda_version
        self.attempts: list[tuple[list[str], FakeOrt.SessionOptions]] = []
        self.preloads = 0
        if preload:
            self.preload_dlls = self._preload

    def _preload(self) -> None:
        self.preloads += 1

    def get_available_providers(self) -> list[str]:
        return self.available

    def InferenceSession(self, path, sess_options, providers):  # noqa: N802 - ONNX Runtime's API
        self.attempts.append((providers, sess_options))
        what = self.behaviour.get(providers[0], OK)
        if isinstance(what, Exception):
            raise what
        return FakeSession([*providers, CPU] if what == OK else [*providers[1:], CPU])

    def tried(self) -> list[list[str]]:
        return [p for p, _ in self.attempts]


def open_fake(ort: FakeOrt, device: str, platform: str = "linux", missing: tuple[str, ...] = ()):
    """Open with the fake; ``missing`` are the library files that do not load."""
    return open_inference_session(ort, "/models/m.onnx", device, ort.SessionOptions, platform,
                                  loads=lambda lib: lib not in missing)


@pytest.mark.parametrize(("device", "platform", "expected"), [
    ("auto", "linux", [CUDA]),
    ("gpu", "linux", [CUDA]),
    ("auto", "win32", [CUDA, DIRECTML]),
    ("gpu", "darwin", [CUDA]),  # CoreML is opt-in
    ("cpu", "win32", []),
    ("tensorrt", "linux", [TENSORRT]),
    ("coreml", "darwin", [COREML]),
])
def test_wanted_providers_per_device_and_platform(device, platform, expected):
    assert wanted(device, platform) == expected


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="device must be one of auto, cpu, gpu, tensorrt, coreml"):
        wanted("cuda")


def test_cuda_falling_back_silently_is_detected_with_the_missing_library():
    ort = FakeOrt([TENSORRT, CUDA, CPU], {CUDA: FALLBACK})
    session, choice = open_fake(ort, "auto", missing=("libcudnn.so.9",))
    assert ort.tried() == [[CUDA], [CPU]]  # TensorRT is never tried unless asked for
    assert session.get_providers()[0] == CPU and choice.provider == CPU
    assert choice.note == ("CUDA provider present but cuDNN 9 not found (libcudnn.so.9); running on CPU "
                           "(install onnxruntime-gpu[cuda,cudnn] or cuDNN 9)")
    assert ort.preloads == 1 and last_choice() == choice


def test_device_gpu_fails_loudly_with_the_reason():
    ort = FakeOrt([CUDA, CPU], {CUDA: FALLBACK})
    with pytest.raises(ModelError) as err:
        open_fake(ort, "gpu", missing=("libcuda.so.1", "libcudnn.so.9"))
    text = str(err.value)
    assert text.startswith("m.onnx: the device 'gpu' was asked for but cannot be used: ")
    assert "CUDA provider present but the NVIDIA driver not found (libcuda.so.1)" in text  # driver first
    assert "install the NVIDIA driver" in text and "'auto' or 'cpu'" in text
    assert ort.tried() == [[CUDA]]  # no CPU session behind the user's back
    assert last_choice().provider == "" and "libcuda.so.1" in last_choice().describe()


def test_cuda_working_runs_on_cuda_without_a_note():
    ort = FakeOrt([CUDA, CPU])
    _, choice = open_fake(ort, "gpu")
    assert choice.provider == CUDA and choice.note == "" and ort.tried() == [[CUDA]]


def test_windows_falls_from_cuda_to_directml_with_its_session_options():
    ort = FakeOrt([CUDA, DIRECTML, CPU], {CUDA: FALLBACK})
    _, choice = open_fake(ort, "auto", "win32", missing=("cublasLt64_12.dll",))
    assert ort.tried() == [[CUDA], [DIRECTML]]
    assert choice.provider == DIRECTML
    assert choice.note.startswith("CUDA provider present but cuBLAS 12 not found (cublasLt64_12.dll); "
                                  "running on DirectML")
    cuda_options, dml_options = (o for _, o in ort.attempts)
    assert (dml_options.enable_mem_pattern, dml_options.execution_mode) == (False, "sequential")
    assert (cuda_options.enable_mem_pattern, cuda_options.execution_mode) == (True, "parallel")


def test_directml_alone_needs_no_cuda_preload():
    ort = FakeOrt([DIRECTML, CPU])
    _, choice = open_fake(ort, "gpu", "win32")
    assert choice.provider == DIRECTML and ort.tried() == [[DIRECTML]] and ort.preloads == 0


def test_tensorrt_only_when_asked_and_backed_by_cuda():
    ort = FakeOrt([TENSORRT, CUDA, CPU])
    _, choice = open_fake(ort, "tensorrt")
    assert choice.provider == TENSORRT and ort.tried() == [[TENSORRT, CUDA]] and ort.preloads == 1
    missing_trt = FakeOrt([TENSORRT, CUDA, CPU], {TENSORRT: FALLBACK})
    with pytest.raises(ModelError, match=r"TensorRT 10 not found \(libnvinfer.so.10\)"):
        open_fake(missing_trt, "tensorrt", missing=("libnvinfer.so.10",))
    with pytest.raises(ModelError, match="no TensorRT provider in this onnxruntime"):
        open_fake(FakeOrt([CUDA, CPU]), "tensorrt")


def test_preload_dlls_only_when_present_and_cuda_wanted():
    old = FakeOrt([CUDA, CPU], preload=False)  # ONNX Runtime < 1.21 has no preload_dlls
    assert open_fake(old, "auto")[1].provider == CUDA
    cpu_only = FakeOrt([CUDA, CPU])
    open_fake(cpu_only, "cpu")
    assert cpu_only.preloads == 0 and cpu_only.tried() == [[CPU]]
    gpu = FakeOrt([CUDA, CPU])
    open_fake(gpu, "auto")
    open_fake(gpu, "gpu")
    assert gpu.preloads == 1 and gpu.tried() == [[CUDA], [CUDA]]  # once per process


def test_cpu_builds_say_what_to_install():
    ort = FakeOrt([CPU])
    _, choice = open_fake(ort, "auto")
    assert choice.provider == CPU and ort.tried() == [[CPU]]
    assert "no GPU provider in this onnxruntime (onnxruntime-gpu 1.22.0, CPU build); running on CPU" \
        in choice.note
    assert "install onnxruntime-gpu for an NVIDIA GPU" in choice.note
    _, windows = open_fake(FakeOrt([CPU]), "auto", "win32")
    assert "onnxruntime-directml" in windows.note


def test_coreml_is_opt_in():
    ort = FakeOrt([COREML, CPU])
    _, auto = open_fake(ort, "auto", "darwin")
    assert auto.provider == CPU and "CoreML, which is opt-in; running on CPU (choose the device 'coreml')" \
        in auto.note
    _, chosen = open_fake(ort, "coreml", "darwin")
    assert chosen.provider == COREML and chosen.note == ""


def test_a_provider_that_raises_is_skipped_with_its_message():
    ort = FakeOrt([CUDA, CPU], {CUDA: RuntimeError("CUDA failure 2: out of memory\ndetails")})
    _, choice = open_fake(ort, "auto")
    assert choice.provider == CPU
    assert choice.note.startswith("CUDA provider failed to start (CUDA failure 2: out of memory); "
                                  "running on CPU")


def test_a_model_the_cpu_cannot_load_is_a_model_error():
    ort = FakeOrt([CPU], {CPU: RuntimeError("INVALID_PROTOBUF : Load model failed")})
    with pytest.raises(ModelError, match=r"m\.onnx cannot be loaded by ONNX Runtime: INVALID_PROTOBUF"):
        open_fake(ort, "cpu")


@pytest.mark.parametrize(("cuda_version", "platform", "expected"), [
    ("12.8", "linux", ["libcuda.so.1", "libcudart.so.12", "libcublasLt.so.12", "libcudnn.so.9"]),
    ("11.8", "linux", ["libcuda.so.1", "libcudart.so.11", "libcublasLt.so.11", "libcudnn.so.8"]),
    ("", "win32", ["nvcuda.dll", "cudart64_12.dll", "cublasLt64_12.dll", "cudnn64_9.dll"]),
])
def test_cuda_libraries_follow_the_build(cuda_version, platform, expected):
    ort = FakeOrt([CUDA], cuda_version=cuda_version)
    assert [lib for _, lib, _ in cuda_libraries(ort, platform)] == expected


def test_gpu_batch_note():
    assert gpu_batch_note(CPU, 100, 10_000) == ""
    assert gpu_batch_note(CUDA, 65_536, 65_536) == \
        "on the GPU (CUDA) each window of up to 65536 pixels is one batch"
    assert "split each window into up to 3 GPU calls" in gpu_batch_note(CUDA, 100, 300)


# -- the real ONNX Runtime of this machine (a CPU build) ----------------------------------------

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(tiny_onnx(tmp_path_factory.mktemp("providers") / "s2.onnx", card_dict(modalities=("S2",))))


@pytest.fixture
def cpu_build():
    if any(p in onnxruntime.get_available_providers() for p in (CUDA, DIRECTML, TENSORRT, COREML)):
        pytest.skip("this onnxruntime has a GPU provider; these tests describe a CPU build")


def test_real_auto_falls_back_and_says_why(model, cpu_build):
    s = open_session(model, device="auto")
    assert s.provider == CPU
    assert s.provider_note.startswith("no GPU provider in this onnxruntime (onnxruntime ")
    assert "install onnxruntime-gpu" in s.provider_note


def test_real_device_gpu_fails_loudly(model, cpu_build):
    with pytest.raises(ModelError, match=r"s2.onnx: the device 'gpu' was asked for but cannot be used: "
                                         r"no GPU provider in this onnxruntime .*CPU build\)"):
        open_session(model, device="gpu")


def test_real_silent_cuda_fallback_is_detected(model, cpu_build, monkeypatch):
    """ONNX Runtime given a CUDA provider it cannot start only warns and builds a CPU session; the
    loop must see that from ``get_providers()`` and not report CUDA."""
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, CPU])
    with pytest.warns(UserWarning, match="CUDAExecutionProvider"):
        s = open_session(model, device="auto")
    assert s.provider == CPU and s.session.get_providers() == [CPU]
    assert s.provider_note.startswith("CUDA provider present but ") and "running on CPU" in s.provider_note


def test_run_result_and_log_carry_the_note(model, cpu_build, data_dir, tmp_path):
    logs: list[str] = []
    result = run_model(model, [RasterInput(cube_path(data_dir))], tmp_path / "out.tif",
                       options=RunOptions(threads=1), log=logs.append)
    assert result.provider == CPU and "no GPU provider in this onnxruntime" in result.provider_note
    assert result.provider_note in logs and result.warnings == []  # the environment, not the data
    assert not any("on the GPU" in m for m in logs)


def test_cli_diagnostics_lists_every_section(model, cpu_build):
    proc = subprocess.run([sys.executable, "-m", "eo_missing_qgis.core", "diagnostics", "--model", model],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for section in ("== QGIS ==\nnot running inside QGIS", "== Python ==", f"executable: {sys.executable}",
                    "sys.path:", "== numpy ==", "== onnxruntime ==", "available providers: ",
                    "build info: ", "== rasterio ==", "its PROJ: ", "== GDAL (osgeo) ==", "PROJ: ",
                    "== Execution provider of the last model ==\ndevice auto: ran on CPU"):
        assert section in proc.stdout, section
    gpu = subprocess.run([sys.executable, "-m", "eo_missing_qgis.core", "diagnostics", "--model", model,
                          "--device", "gpu"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert gpu.returncode == 2 and "the device 'gpu' was asked for" in gpu.stderr
    assert "device gpu: ran on nothing" in gpu.stdout


def test_providers_module_imports_no_onnxruntime():
    code = ("import sys; import eo_missing_qgis.core.providers, eo_missing_qgis.core.diagnostics\n"
            "print('onnxruntime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_cli_predict_device_gpu_fails_without_writing(model, cpu_build, data_dir, tmp_path, capsys):
    from eo_missing_qgis.core.cli import main

    out = tmp_path / "never.tif"
    assert main(["predict", "--model", model, "--input", cube_path(data_dir), "--out", str(out),
                 "--device", "gpu"]) == 2
    assert "error: s2.onnx: the device 'gpu' was asked for but cannot be used" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_processing_log_says_why_and_device_gpu_fails(plugin, model, cpu_build, data_dir, tmp_path):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    class Log(QgsProcessingFeedback):
        def __init__(self) -> None:
            super().__init__()
            self.lines: list[str] = []

        def pushInfo(self, info: str) -> None:  # noqa: N802 - QGIS API
            self.lines.append(info)

    cube = cube_path(data_dir)
    s2 = [f'NETCDF:"{cube}":S2-L2A-{b}' for b in ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11",
                                                   "B12")]
    params = {"MODEL": model, "S2": s2, "OUTPUT": str(tmp_path / "auto.tif")}
    log = Log()
    result = processing.run("eomissing:predict", params, feedback=log)
    assert result["PROVIDER"] == CPU
    assert any(line.startswith("no GPU provider in this onnxruntime") and "install onnxruntime-gpu" in line
               for line in log.lines)
    with pytest.raises(QgsProcessingException, match="the device 'gpu' was asked for but cannot be used"):
        processing.run("eomissing:predict", {**params, "OUTPUT": str(tmp_path / "gpu.tif"), "DEVICE": 2})
    assert not (tmp_path / "gpu.tif").exists()
    tensorrt = DEVICES.index("tensorrt")  # Processing offers every device, in the vocabulary's order
    trt = {**params, "OUTPUT": str(tmp_path / "trt.tif"), "DEVICE": tensorrt}
    with pytest.raises(QgsProcessingException, match="device 'tensorrt' was asked for but cannot be used"):
        processing.run("eomissing:predict", trt)
    assert not (tmp_path / "trt.tif").exists()
