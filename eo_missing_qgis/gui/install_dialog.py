"""The "Install dependencies…" dialog: shows the plan, runs pip as a background task and shows its
log as it comes; an opt-in button installs the GPU runtime instead."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qgis.core import QgsApplication, QgsTask
from qgis.PyQt.QtCore import QCoreApplication, pyqtSignal
from qgis.PyQt.QtGui import QFontDatabase
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QPlainTextEdit, QPushButton, QVBoxLayout

from ..core.installer import (
    InstallError,
    InstallPlan,
    dependencies_folder,
    dependency_plan,
    gpu_plan,
    run_install,
)


def tr(text: str) -> str:
    return QCoreApplication.translate("InstallDialog", text)


class InstallTask(QgsTask):
    """Runs one :class:`InstallPlan` off the GUI thread; ``line`` carries pip's output to the log."""

    line = pyqtSignal(str)

    def __init__(self, plan: InstallPlan, description: str):
        super().__init__(description, QgsTask.Flag.CanCancel)
        self.plan = plan
        self.message = ""

    def run(self) -> bool:
        try:
            self.message = run_install(self.plan, self.line.emit, self.isCanceled)
        except (InstallError, OSError) as exc:  # shown in the log in plain words, not a traceback
            self.message = str(exc)
            return False
        return True


class InstallDialog(QDialog):
    """A read-only log and Install / Install GPU runtime / Cancel / Close buttons.

    ``done`` carries the closing message and whether it succeeded (the tests wait on it).
    """

    done = pyqtSignal(str, bool)

    def __init__(self, profile_dir: str | Path | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle(tr("EO missing modalities: install dependencies"))
        self.target = dependencies_folder(profile_dir or QgsApplication.qgisSettingsDirPath())
        self.task: InstallTask | None = None
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log.setMinimumSize(640, 320)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.install_button = QPushButton(tr("Install"))
        self.gpu_button = QPushButton(tr("Install GPU runtime"))
        self.gpu_button.setToolTip(tr("Replaces the CPU onnxruntime in the folder by onnxruntime-gpu "
                                      "(NVIDIA, with CUDA and cuDNN) or onnxruntime-directml (Windows)"))
        self.cancel_button = QPushButton(tr("Cancel"))
        for button in (self.install_button, self.gpu_button, self.cancel_button):
            buttons.addButton(button, QDialogButtonBox.ButtonRole.ActionRole)
        layout = QVBoxLayout(self)
        layout.addWidget(self.log)
        layout.addWidget(buttons)
        buttons.rejected.connect(self.reject)
        self.install_button.clicked.connect(lambda: self.start(lambda: dependency_plan(self.target)))
        self.gpu_button.clicked.connect(lambda: self.start(lambda: gpu_plan(self.target)))
        self.cancel_button.clicked.connect(self.cancel)
        self._set_running(False)
        self.show_plan()

    def show_plan(self) -> None:
        """What Install would do, before the user commits to it."""
        try:
            lines = dependency_plan(self.target).describe()
        except InstallError as exc:
            lines = [str(exc)]
        self.log.setPlainText("\n".join(lines))

    def start(self, make_plan: Callable[[], InstallPlan]) -> None:
        try:
            plan = make_plan()
        except InstallError as exc:
            self.log.appendPlainText(str(exc))
            self.done.emit(str(exc), False)
            return
        self.log.clear()
        self.task = InstallTask(plan, tr("Installing the EO missing modalities dependencies"))
        self.task.line.connect(self.log.appendPlainText)
        self.task.taskCompleted.connect(lambda: self._finish(True))
        self.task.taskTerminated.connect(lambda: self._finish(False))
        self._set_running(True)
        QgsApplication.taskManager().addTask(self.task)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _finish(self, ok: bool) -> None:
        task, self.task = self.task, None
        message = (task.message if task is not None else "") or tr("installation cancelled")  # before it ran
        self.log.appendPlainText(("" if ok else "Failed: ") + message)
        self._set_running(False)
        self.done.emit(message, ok)

    def _set_running(self, running: bool) -> None:
        self.install_button.setEnabled(not running)
        self.gpu_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)


_dialog: InstallDialog | None = None


def show_install_dialog(parent=None) -> InstallDialog:
    """The one install dialog of the session (the menu and the panel share it, so two pip runs
    never write the same folder at once); kept after closing, so a running install keeps its log."""
    global _dialog
    if _dialog is None:
        _dialog = InstallDialog(parent=parent)
    _dialog.show()
    _dialog.raise_()
    return _dialog


def close_install_dialog() -> None:
    """At plugin unload: cancel a running install and drop the dialog."""
    global _dialog
    if _dialog is not None:
        _dialog.cancel()
        _dialog.deleteLater()
        _dialog = None
