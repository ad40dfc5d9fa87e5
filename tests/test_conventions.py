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


def _plugin_trees():
    for path in sorted(PLUGIN.rglob("*.py")):
        yield path.relative_to(PLUGIN), ast.parse(path.read_text())


def _is_qt_class(node: ast.expr) -> bool:
    """``Qt``, ``Qgis`` and the ``Q...``/``Qgs...`` classes whose enums PyQt6 scopes."""
    return isinstance(node, ast.Name) and (node.id in ("Qt", "Qgis") or node.id.startswith("Qgs") or (
        len(node.id) > 1 and node.id[0] == "Q" and node.id[1].isupper()))


def unscoped_enums(tree: ast.AST) -> list[tuple[int, str]]:
    """``Qt.UserRole``-style members (class, then a capitalised member with no enum in between):
    PyQt6 (QGIS 4) only knows ``Qt.ItemDataRole.UserRole``. Calls (``QgsRasterLayer.LayerOptions()``,
    nested classes), annotations (``level: Qgis.MessageLevel``) and ALL_CAPS constants
    (``Qgis.QGIS_VERSION``) are not enum members."""
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    annotations = [n.annotation for n in ast.walk(tree) if isinstance(n, (ast.arg, ast.AnnAssign))]
    annotations += [n.returns for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    in_annotation = {id(n) for a in annotations if a is not None for n in ast.walk(a)}
    scoping = {id(n.value) for n in ast.walk(tree)
               if isinstance(n, ast.Attribute) and n.attr[:1].isupper()}
    return [(n.lineno, f"{n.value.id}.{n.attr}") for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and _is_qt_class(n.value) and n.attr[:1].isupper()
            and not n.attr.isupper() and id(n) not in called | scoping | in_annotation]


def test_qt_enums_are_scoped():
    offenders = [f"{rel}:{line} {name}" for rel, tree in _plugin_trees()
                 for line, name in sorted(unscoped_enums(tree))]
    assert offenders == []


def test_unscoped_enum_scan_catches_what_breaks_on_qt6():
    code = ("Qt.UserRole; QHeaderView.ResizeToContents; Qgis.Success; Qt.ItemDataRole.UserRole; "
            "QgsRasterLayer.LayerOptions(); Qgis.QGIS_VERSION; QgsTask.Flag.CanCancel; QgsTask.CanCancel\n"
            "x.Foo\n"
            "def f(level: Qgis.MessageLevel) -> Qgis.MessageLevel: ...")
    assert [name for _, name in unscoped_enums(ast.parse(code))] == [
        "Qt.UserRole", "QHeaderView.ResizeToContents", "Qgis.Success", "QgsTask.CanCancel"]


def test_qt_is_imported_only_through_qgis_pyqt():
    direct = {"PyQt5", "PyQt6", "PySide2", "PySide6", "sip"}
    offenders = []
    for rel, tree in _plugin_trees():
        modules = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        offenders += [f"{rel}: {m}" for m in sorted(modules) if m.split(".")[0] in direct]
    assert offenders == []
