"""The plugin object QGIS creates: the Processing provider, and in the GUI a panel with a toolbar
button and a Raster menu entry."""

from __future__ import annotations

from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtCore import QCoreApplication, Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .core.installer import add_to_sys_path, dependencies_folder
from .processing.provider import ICON, EoMissingProvider

MENU = "EO missing modalities"


class EoMissingPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider: EoMissingProvider | None = None
        self.action: QAction | None = None
        self.diagnostics_action: QAction | None = None
        self.panel = None
        self.install_action: QAction | None = None
        # Packages installed by "Install dependencies…" (or qpip), after QGIS's own on the path.
        add_to_sys_path(dependencies_folder(QgsApplication.qgisSettingsDirPath()))

    def tr(self, text: str) -> str:
        return QCoreApplication.translate("EoMissingPlugin", text)

    def initProcessing(self) -> None:  # noqa: N802 - QGIS API
        """Called by QGIS (also headless, by qgis_process) to register the algorithms."""
        self.provider = EoMissingProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS API
        self.initProcessing()
        self.action = QAction(QIcon(ICON), self.tr("Predict from available layers…"), self.iface.mainWindow())
        self.action.setCheckable(True)
        self.action.toggled.connect(self.show_panel)
        self.iface.addRasterToolBarIcon(self.action)
        self.iface.addPluginToRasterMenu(self.tr(MENU), self.action)
        self.diagnostics_action = QAction(self.tr("Copy diagnostics"), self.iface.mainWindow())
        self.diagnostics_action.triggered.connect(self.copy_diagnostics)
        self.iface.addPluginToRasterMenu(self.tr(MENU), self.diagnostics_action)
        self.install_action = QAction(self.tr("Install dependencies…"), self.iface.mainWindow())
        self.install_action.triggered.connect(self.show_install_dialog)
        self.iface.addPluginToRasterMenu(self.tr(MENU), self.install_action)

    def copy_diagnostics(self) -> None:
        """Imported on use, so QGIS start-up pays nothing for it."""
        from .gui.diagnostics import copy_diagnostics

        copy_diagnostics()
        self.iface.messageBar().pushMessage(self.tr(MENU), self.tr("Diagnostics copied to the clipboard."),
                                            level=Qgis.MessageLevel.Info)

    def show_install_dialog(self) -> None:
        from .gui.install_dialog import show_install_dialog

        show_install_dialog(self.iface.mainWindow())

    def show_panel(self, visible: bool) -> None:
        """Build the panel on first use, so QGIS start-up pays nothing for it."""
        if self.panel is None:
            from .gui.panel import EoMissingPanel

            self.panel = EoMissingPanel(self.iface, self.iface.mainWindow())
            self.panel.visibilityChanged.connect(self.action.setChecked)
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.panel)
        self.panel.setVisible(visible)

    def unload(self) -> None:
        if self.panel is not None:
            self.panel.teardown()
            self.iface.removeDockWidget(self.panel)
            self.panel.deleteLater()
            self.panel = None
        if self.install_action is not None:
            self.iface.removePluginRasterMenu(self.tr(MENU), self.install_action)
            self.install_action.deleteLater()
            self.install_action = None
            from .gui.install_dialog import close_install_dialog

            close_install_dialog()
        if self.action is not None:
            self.iface.removeRasterToolBarIcon(self.action)
            self.iface.removePluginRasterMenu(self.tr(MENU), self.action)
            self.action.deleteLater()
            self.action = None
        if self.diagnostics_action is not None:
            self.iface.removePluginRasterMenu(self.tr(MENU), self.diagnostics_action)
            self.diagnostics_action.deleteLater()
            self.diagnostics_action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
