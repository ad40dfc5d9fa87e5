"""Conventions enforced by tests, not by memory."""

from __future__ import annotations

import ast
from pathlib import Path

PLUGIN = Path(__file__).resolve().parent.parent / "eo_missing_qgis"
#: Calls whose string arguments a user reads: they must be wrapped in tr().
USER_VISIBLE = {"QLabel", "QPushButton", "QAction", "QDockWidget", "setText", "setToolTip",
                "setWindowTitle", "pushInfo", "pushWarning", "reportError", "pushMessage",
                "QgsProcessingException", "setHorizontalHeaderLabels"}


def _name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def test_user_visible_strings_go_through_tr():
    offenders = []
    for path in [*PLUGIN.glob("gui/*.py"), *PLUGIN.glob("processing/*.py"), PLUGIN / "plugin.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and _name(node.func) in USER_VISIBLE:
                for arg in node.args:
                    literal = isinstance(arg, ast.JoinedStr) or (
                        isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.strip())
                    if literal:
                        offenders.append(f"{path.relative_to(PLUGIN)}:{node.lineno}")
    assert offenders == []


def test_core_imports_no_qgis_and_plugin_no_training_or_torch():
    for path in PLUGIN.rglob("*.py"):
        tree = ast.parse(path.read_text())
        modules = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        roots = {m.split(".")[0] for m in modules}
        assert not roots & {"training", "torch"}, path
        if "core" in path.relative_to(PLUGIN).parts:
            assert not roots & {"qgis", "PyQt5"}, path
