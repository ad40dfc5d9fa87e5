"""Installing the plugin's dependencies into QGIS's Python: interpreter resolution, plans, the
"already installed" and "pip missing" paths, and a real install from the package registry that
Debian's own Python (no venv) then uses to run a prediction through qgis_process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qgis.core import QgsRasterLayer

from eo_missing_qgis.core import installer
from eo_missing_qgis.core.installer import (
    GPU_CUDA,
    GPU_DIRECTML,
    InstallError,
    InstallPlan,
    add_to_sys_path,
    dependencies_folder,
    dependency_plan,
    gpu_plan,
    python_interpreter,
    read_requirements,
    run_install,
)

from .conftest import ROOT, make_qgis_process

SYSTEM_PYTHON = Path("/usr/bin/python3")  # Debian's, the one QGIS 3.22 embeds; no venv packages
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def test_dependencies_folder_is_qpips_per_python_version(tmp_path):
    assert dependencies_folder(tmp_path, (3, 12)) == tmp_path / "python" / "dependencies" / "3.12"


def test_target_folder_is_appended_after_qgis_packages(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "path", list(sys.path))
    first = sys.path[0]
    assert add_to_sys_path(tmp_path) is True
    assert sys.path[-1] == str(tmp_path) and sys.path[0] == first
    assert add_to_sys_path(tmp_path) is False
    assert sys.path.count(str(tmp_path)) == 1


@pytest.mark.parametrize(("platform", "exe", "prefix", "python"), [
    # OSGeo4W: sys.executable is qgis-bin.exe, python.exe sits in sys.prefix
    ("win32", "OSGeo4W/bin/qgis-bin.exe", "OSGeo4W/apps/Python312", "OSGeo4W/apps/Python312/python.exe"),
    # macOS bundle: sys.executable is the QGIS binary, python3 in sys.prefix/bin
    ("darwin", "QGIS.app/Contents/MacOS/QGIS", "QGIS.app/Contents/Frameworks/Python.framework/Versions/3.12",
     "QGIS.app/Contents/Frameworks/Python.framework/Versions/3.12/bin/python3.12"),
    # Linux, embedded Python took a pyenv shim from PATH (seen here in qgis_process.bin)
    ("linux", "home/.pyenv/shims/python3", "usr", "usr/bin/python3.12"),
    # a venv or a plain interpreter: sys.executable itself
    ("linux", "venv/bin/python", "venv", "venv/bin/python"),
])
def test_python_interpreter_is_resolved_like_qpip(tmp_path, platform, exe, prefix, python):
    _touch(tmp_path / exe)
    expected = _touch(tmp_path / python)
    found = python_interpreter(str(tmp_path / exe), str(tmp_path / prefix), platform, (3, 12))
    assert found == expected


def test_no_interpreter_found_says_where_it_looked(tmp_path):
    _touch(tmp_path / "bin" / "qgis-bin.exe")
    with pytest.raises(InstallError, match=r"cannot find the Python interpreter.*python\.exe"):
        python_interpreter(str(tmp_path / "bin" / "qgis-bin.exe"), str(tmp_path / "apps"), "win32")


def test_requirements_file_ships_in_the_plugin_with_ranges():
    reqs = read_requirements()
    assert installer.REQUIREMENTS_FILE.parent == ROOT / "eo_missing_qgis"
    assert {r.split(">")[0] for r in reqs} == {"onnxruntime"}  # rasterio: QGIS's GDAL stands in
    assert all(">=" in r and "<" in r for r in reqs)


def test_plan_pins_the_running_numpy_and_builds_pip_args(tmp_path):
    plan = dependency_plan(tmp_path / "deps", requirements=["rasterio>=99"], python=Path(sys.executable))
    assert plan.requirements == ["rasterio>=99"]  # installed here, but not at that version
    assert f"numpy=={np.__version__}" in plan.constraints
    args = plan.pip_args(tmp_path / "c.txt")
    assert args[:5] == [sys.executable, "-u", "-m", "pip", "install"]
    assert args[args.index("--target") + 1] == str(tmp_path / "deps")
    assert args[args.index("--constraint") + 1] == str(tmp_path / "c.txt")
    assert args[-1] == "rasterio>=99"


@pytest.mark.parametrize(("platform", "nvidia", "package", "removed"), [
    ("linux", True, GPU_CUDA, {"onnxruntime", "onnxruntime-directml"}),
    ("win32", True, GPU_CUDA, {"onnxruntime", "onnxruntime-directml"}),
    ("win32", False, GPU_DIRECTML, {"onnxruntime", "onnxruntime-gpu"}),
])
def test_gpu_plan_per_platform_replaces_the_cpu_package(tmp_path, platform, nvidia, package, removed):
    plan = gpu_plan(tmp_path, platform=platform, nvidia=nvidia, python=Path(sys.executable))
    assert plan.requirements == [package]
    assert set(plan.remove) == removed
    # onnxruntime (CPU) is in this venv's own site-packages: it would hide the GPU package
    assert any("QGIS's own Python has onnxruntime" in note for note in plan.notes)


@pytest.mark.parametrize(("platform", "message"), [
    ("darwin", "includes CoreML"), ("linux", "no NVIDIA GPU found"),
])
def test_gpu_plan_refuses_where_there_is_nothing_to_install(tmp_path, platform, message):
    with pytest.raises(InstallError, match=message):
        gpu_plan(tmp_path, platform=platform, nvidia=False, python=Path(sys.executable))


def test_already_installed_runs_no_pip(tmp_path):
    """This venv has onnxruntime and rasterio: nothing to do, and the folder is not even created."""
    plan = dependency_plan(tmp_path / "deps", python=tmp_path / "no-such-python")
    lines: list[str] = []
    message = run_install(plan, lines.append)
    assert message.startswith("Already installed: onnxruntime ") and "Nothing to do" in message
    assert not (tmp_path / "deps").exists()


def test_pip_missing_is_said_plainly(tmp_path):
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(tmp_path / "nopip")], check=True)
    plan = InstallPlan(python=tmp_path / "nopip" / "bin" / "python", target=tmp_path / "deps",
                       requirements=["rasterio"], constraints=[])
    with pytest.raises(InstallError, match=r"pip is missing for .*nopip.*python3-pip"):
        run_install(plan, lambda _line: None)
    assert not (tmp_path / "deps").exists()


def test_cancel_stops_pip_and_says_so(tmp_path):
    plan = InstallPlan(python=Path(sys.executable), target=tmp_path / "deps",
                       requirements=["rasterio"], constraints=[])
    with pytest.raises(InstallError, match="installation cancelled"):
        run_install(plan, lambda _line: None, is_canceled=lambda: True)


def _system_python(*args: str, **env: str) -> subprocess.CompletedProcess:
    """Debian's Python with only the checkout on its path (no venv), as QGIS's Python is."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(SYSTEM_PYTHON), *args], env={**clean, "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=600)


INSTALL = ("import sys; from pathlib import Path; from eo_missing_qgis.core.installer import *; "
           "print(run_install(dependency_plan(Path(sys.argv[1])), print))")


@pytest.mark.slow
def test_real_install_then_prediction_with_debians_python(tmp_path, data_dir):
    """From the registry into the profile's dependencies folder; qgis_process (Debian's Python, no
    venv, no rasterio) then finds onnxruntime there through the plugin, reads and writes with
    QGIS's GDAL, and predicts."""
    profile = tmp_path / "profile"
    target = dependencies_folder(profile / "profiles" / "default", sys.version_info[:2])
    assert _system_python("-c", "import rasterio").returncode != 0  # the premise: Debian lacks them
    first = _system_python("-c", INSTALL, str(target))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Successfully installed" in first.stdout and "Installed onnxruntime" in first.stdout
    assert "Constraint: numpy==1.24.2" in first.stdout
    names = {p.name.split("-")[0] for p in target.iterdir()}
    assert "onnxruntime" in names and "rasterio" not in names
    assert "numpy" not in names  # pinned to Debian's numpy, and pip's copy removed: one numpy

    second = _system_python("-c", INSTALL, str(target))
    assert second.returncode == 0, second.stderr
    assert "Nothing to do" in second.stdout and "Collecting" not in second.stdout

    run = make_qgis_process(ROOT, profile, with_venv=False)
    cube = data_dir / "worldcereal" / "worldcereal_preprocessed_inputs.nc"
    out = tmp_path / "crop.tif"
    bands = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12")
    proc = run("run", "eomissing:predict", "--json", "--", "TASK=Crop type", f"OUTPUT={out}",
               *[f'S2=NETCDF:"{cube}":S2-L2A-{b}' for b in bands])
    assert json.loads(proc.stdout)["results"]["PROVIDER"] == "CPUExecutionProvider"
    layer = QgsRasterLayer(str(out))
    assert layer.isValid() and (layer.width(), layer.height()) == (100, 100)
    stats = layer.dataProvider().bandStatistics(1)
    assert stats.minimumValue >= 1 and stats.maximumValue <= 255

    # The GPU step's first move: the CPU package leaves the folder, the rest stays.
    assert installer.remove_distribution(target, "onnxruntime")
    assert not (target / "onnxruntime").exists() and (target / "flatbuffers").is_dir()
    check = _system_python("-c", f"import sys; sys.path.append({str(target)!r}); import onnxruntime")
    assert "No module named 'onnxruntime'" in check.stderr
