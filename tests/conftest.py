"""Test harness: one real headless QgsApplication with Processing, an isolated QGIS profile,
a qgis_process runner that loads the plugin from the checkout, and the real data directory."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from scripts.qgis_process_env import qgis_process_env

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_PROFILE = tempfile.mkdtemp(prefix="eo_missing_qgis_profile_")
os.environ["QGIS_CUSTOM_CONFIG_PATH"] = _PROFILE

from qgis.core import QgsApplication  # noqa: E402

QgsApplication.setPrefixPath("/usr", True)
QGIS_APP = QgsApplication([], True, _PROFILE)
QGIS_APP.initQgis()
sys.path.append("/usr/share/qgis/python/plugins")
from processing.core.Processing import Processing  # noqa: E402

Processing.initialize()


@pytest.fixture(scope="session")
def qgis_app() -> QgsApplication:
    return QGIS_APP


@pytest.fixture
def plugin(qgis_app):
    """The plugin loaded as QGIS loads it (against a real test interface), unloaded afterwards."""
    import eo_missing_qgis

    from .qgis_interface import TestInterface

    loaded = eo_missing_qgis.classFactory(TestInterface())
    loaded.initProcessing()
    yield loaded
    loaded.unload()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data (``../shared/data`` unless EO_MISSING_DATA_DIR says otherwise).

    Tests that need it skip only when it is absent outside CI; in CI its absence fails them.
    """
    path = Path(os.environ.get("EO_MISSING_DATA_DIR", ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the real data directory, but {path} does not exist")
        pytest.skip(f"real data directory {path} is absent (set EO_MISSING_DATA_DIR)")
    return path


def make_qgis_process(plugin_path: Path, profile: Path, with_venv: bool = True
                      ) -> Callable[..., subprocess.CompletedProcess]:
    """A runner for ``qgis_process.bin ARGS`` with the plugin at ``plugin_path`` enabled."""
    env = qgis_process_env(plugin_path, profile, with_venv)

    def run(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["qgis_process.bin", *args], env=env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"qgis_process.bin {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    run("plugins", "enable", "eo_missing_qgis")
    return run


@pytest.fixture(scope="session")
def qgis_process(tmp_path_factory) -> Callable[..., subprocess.CompletedProcess]:
    """``qgis_process.bin`` with the plugin loaded from this checkout, in its own profile."""
    return make_qgis_process(ROOT, tmp_path_factory.mktemp("qgis_process_profile"))
