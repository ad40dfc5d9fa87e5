"""The environment in which ``qgis_process.bin`` loads the plugin from a folder (used by the demo
and the tests): headless Qt, the plugin folder, an isolated profile and the venv's packages."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def qgis_process_env(plugin_path: Path, profile: Path, with_venv: bool = True) -> dict[str, str]:
    """``with_venv=False`` gives QGIS only Debian's packages: a user's QGIS without onnxruntime."""
    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        QGIS_PLUGINPATH=str(plugin_path),
        QGIS_CUSTOM_CONFIG_PATH=str(profile),
        PYTHONPATH=os.pathsep.join([sysconfig.get_paths()["purelib"]] * with_venv + [str(ROOT)]),
    )
    return env
