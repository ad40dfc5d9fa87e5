"""A small real QgisInterface for tests: a QMainWindow with a raster toolbar, a Raster menu, a
message bar and dock areas, so the plugin's GUI code runs against real widgets."""

from __future__ import annotations

from qgis.gui import QgisInterface, QgsMapCanvas, QgsMessageBar
from qgis.PyQt.QtWidgets import QMainWindow, QMenu, QToolBar


class TestInterface(QgisInterface):
    __test__ = False  # not a pytest test class

    def __init__(self):
        super().__init__()
        self.window = QMainWindow()
        self.canvas = QgsMapCanvas(self.window)
        self.window.setCentralWidget(self.canvas)
        self.toolbar = QToolBar("Raster", self.window)
        self.window.addToolBar(self.toolbar)
        self.raster_menu = self.window.menuBar().addMenu("Raster")
        self.bar = QgsMessageBar(self.window)
        self.submenus: dict[str, QMenu] = {}

    def mainWindow(self):  # noqa: N802
        return self.window

    def mapCanvas(self):  # noqa: N802
        return self.canvas

    def messageBar(self):  # noqa: N802
        return self.bar

    def addRasterToolBarIcon(self, action):  # noqa: N802
        self.toolbar.addAction(action)
        return 0

    def removeRasterToolBarIcon(self, action):  # noqa: N802
        self.toolbar.removeAction(action)

    def addPluginToRasterMenu(self, name, action):  # noqa: N802
        menu = self.submenus.get(name) or self.raster_menu.addMenu(name)
        self.submenus[name] = menu
        menu.addAction(action)

    def removePluginRasterMenu(self, name, action):  # noqa: N802
        menu = self.submenus.get(name)
        if menu is not None:
            menu.removeAction(action)
            if not menu.actions():
                self.raster_menu.removeAction(menu.menuAction())
                del self.submenus[name]

    def addDockWidget(self, area, dock):  # noqa: N802
        self.window.addDockWidget(area, dock)

    def removeDockWidget(self, dock):  # noqa: N802
        self.window.removeDockWidget(dock)
