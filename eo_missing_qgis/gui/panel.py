"""Dock panel: recognise the project's raster layers, show which model will run, run it in the
background and add the styled results to the map."""

from __future__ import annotations

import tempfile
import time
import traceback
from functools import cache, partial
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsProject, QgsRasterLayer, QgsTask
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import QCoreApplication, Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.card import ModelCard, read_card
from ..core.definitions import LAYER_MODEL_PROPERTY, Modality, OutputKind
from ..core.dependencies import install_hint, missing_packages
from ..core.footprint import layers_outline
from ..core.model_index import NoModelError, load_index, select_model, tasks
from ..core.prediction import (
    LayerMapping,
    PredictionRequest,
    input_problems,
    layer_date_text,
    recognise_layer,
    run_prediction,
)
from ..core.raster_io import RasterHeader
from ..core.recognition import Recognition
from ..map_layers import style_layer
from .diagnostics import copy_diagnostics

IGNORE = "ignore"
ALL = "all in the file"  # a multi-sensor stack gives each modality its own bands
MODALITY_CHOICES = (Modality.S1, Modality.S2, Modality.DEM, ALL, IGNORE)
COL_LAYER, COL_MODALITY, COL_BANDS, COL_FIRST, COL_DATE, COL_DETAIL = range(6)
EDITABLE = {COL_BANDS: 0, COL_FIRST: 1, COL_DATE: 2}  # column -> place in the texts kept per layer
PROGRESS_FORMAT = "%p%"  # QProgressBar's own, shown until the first estimate of the time left
WARNING_STYLE = "color: #b35900; font-weight: bold"  # the outside-footprint line stands out before Run


def tr(text: str) -> str:
    return QCoreApplication.translate("EoMissingPanel", text)


class PredictionTask(QgsTask):
    """Runs a prediction off the GUI thread; cancel stops it within one batch. ``status`` carries
    the progress text (share done, time left) to the GUI thread."""

    status = pyqtSignal(str)

    def __init__(self, request: PredictionRequest, description: str):
        super().__init__(description, QgsTask.Flag.CanCancel)
        self.request = request
        self.result = None
        self.error = ""
        self.seconds = 0.0

    def run(self) -> bool:
        start = time.perf_counter()
        try:
            self.result = run_prediction(self.request, progress=lambda f: self.setProgress(100 * f),
                                         is_canceled=self.isCanceled, status=self.status.emit)
        except (ValueError, ImportError, OSError) as exc:  # user errors, in plain words
            self.error = str(exc)
            return False
        except Exception as exc:  # anything else (an ONNX Runtime failure) is a failure too, never a cancel
            QgsMessageLog.logMessage(traceback.format_exc(), tr("EO missing modalities"),
                                     Qgis.MessageLevel.Critical)
            self.error = tr("Prediction failed ({}): {}; nothing was written. Details in the log "
                            "panel.").format(type(exc).__name__, str(exc).strip() or tr("no message"))
            return False
        self.seconds = time.perf_counter() - start
        return self.result is not None


class EoMissingPanel(QDockWidget):
    """The panel; ``finished`` carries the message shown in the message bar (for tests too)."""

    finished = pyqtSignal(str, object)  # message, Qgis.MessageLevel (an enum, not an int, on Qt6)

    def __init__(self, iface=None, parent=None, models_dir: Path | None = None):
        super().__init__(tr("EO missing modalities"), parent)
        self.setObjectName("EoMissingPanel")
        self.iface = iface
        self.models = load_index(models_dir) if models_dir else load_index()
        self.task: PredictionTask | None = None
        self.overrides: dict[str, str] = {}
        self.typed: dict[str, list[str]] = {}  # layer id -> [bands, first step, date] as typed
        self.recognitions: dict[str, Recognition] = {}  # layer id -> what it looks like it holds
        self.chosen = None
        self.cards: dict[Path, ModelCard] = {}
        self.headers: dict[str, RasterHeader] = {}  # of the listed layers, reused by every request
        self.warned = ""  # the footprint warning last pushed to the message bar (pushed once)

        body = QWidget()
        layout = QVBoxLayout(body)
        self.task_combo = QComboBox()
        for task_id, title in tasks(self.models).items():
            self.task_combo.addItem(title, task_id)
        layout.addWidget(QLabel(tr("Task")))
        layout.addWidget(self.task_combo)
        self.model_combo = QComboBox()  # data: the model's file; None to choose by sensors and place
        self.model_combo.setToolTip(tr("Automatic picks the task's model from the layers' sensors and "
                                       "location; a model picked here is always used (a warning says "
                                       "when the layers are outside where it was trained)."))
        layout.addWidget(QLabel(tr("Model")))
        layout.addWidget(self.model_combo)
        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels([tr("Layer"), tr("Modality"), tr("Bands"), tr("First step"),
                                              tr("Date"), tr("Recognised as")])
        self.table.horizontalHeaderItem(COL_BANDS).setToolTip(
            tr("The layer's bands in raster-band order, comma separated, when its names do not say them"))
        self.table.horizontalHeaderItem(COL_FIRST).setToolTip(
            tr("1-based time step the model's months start at (blank: the latest months)"))
        self.table.horizontalHeaderItem(COL_DATE).setToolTip(
            tr("The layer's date (YYYY-MM-DD), as recognised from its metadata or file name; type it "
               "when it is missing or wrong. It places the layer on the model's months."))
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(COL_LAYER, QHeaderView.ResizeMode.ResizeToContents)
        layout.addWidget(self.table)
        self.choice = QLabel()
        self.choice.setWordWrap(True)
        layout.addWidget(self.choice)
        self.place_warning = QLabel()  # outside the chosen model's training footprint, said before Run
        self.place_warning.setWordWrap(True)
        self.place_warning.setStyleSheet(WARNING_STYLE)
        self.place_warning.setVisible(False)
        layout.addWidget(self.place_warning)
        self.install_button = QPushButton(tr("Install dependencies…"))
        self.install_button.clicked.connect(self.show_install_dialog)
        layout.addWidget(self.install_button)
        self.install_dialog = None
        grid_row = QHBoxLayout()
        grid_row.addWidget(QLabel(tr("Output grid from")))
        self.grid_combo = QComboBox()  # data: the layer's source; None for the finest input
        self.grid_combo.setToolTip(tr("The layer whose grid (CRS, pixel size, extent) the outputs use; "
                                      "by default the input with the finest pixels."))
        grid_row.addWidget(self.grid_combo)
        layout.addLayout(grid_row)
        row = QHBoxLayout()
        row.addWidget(QLabel(tr("Output folder")))
        self.output_dir = QgsFileWidget()
        self.output_dir.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.output_dir.setFilePath(tempfile.gettempdir())
        row.addWidget(self.output_dir)
        layout.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        layout.addWidget(self.progress)
        buttons = QHBoxLayout()
        self.run_button = QPushButton(tr("Run"))
        self.cancel_button = QPushButton(tr("Cancel"))
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.diagnostics_button = QPushButton(tr("Copy diagnostics"))
        self.diagnostics_button.setToolTip(tr("Copy QGIS, Python, package versions and the execution "
                                              "provider of the last run, to paste into a bug report."))
        layout.addWidget(self.diagnostics_button)
        self.setWidget(body)

        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.diagnostics_button.clicked.connect(self.copy_diagnostics)
        self.task_combo.currentIndexChanged.connect(self.list_models)
        self.model_combo.currentIndexChanged.connect(self.update_choice)
        self.table.itemChanged.connect(self.set_typed)
        project = QgsProject.instance()
        project.layersAdded.connect(self.refresh)
        project.layersRemoved.connect(self.refresh)
        self.list_models()
        self.refresh()

    # -- layers and model choice ---------------------------------------------------------------
    def raster_layers(self) -> list[QgsRasterLayer]:
        return [lyr for lyr in QgsProject.instance().mapLayers().values() if isinstance(lyr, QgsRasterLayer)
                and not lyr.customProperty(LAYER_MODEL_PROPERTY)]

    def refresh(self, *_args) -> None:
        layers = self.raster_layers()
        sources = {layer.source() for layer in layers}  # a new layer's header is read once, below
        self.headers = {s: h for s, h in self.headers.items() if s in sources}
        self.table.blockSignals(True)  # the typed columns are filled here, not typed
        self.table.setRowCount(len(layers))
        for row, layer in enumerate(layers):
            guess = recognise_layer(layer.source(), layer.name(), self.headers)
            self.recognitions[layer.id()] = guess
            item = QTableWidgetItem(layer.name())
            item.setData(Qt.ItemDataRole.UserRole, layer.id())
            item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
            self.table.setItem(row, COL_LAYER, item)
            combo = QComboBox()
            combo.addItems(MODALITY_CHOICES)
            recognised = ALL if len(guess.modalities) > 1 else guess.modality or IGNORE
            modality = self.overrides.get(layer.id(), recognised)
            combo.setCurrentText(modality)
            combo.currentTextChanged.connect(partial(self.set_modality, layer.id()))
            self.table.setCellWidget(row, COL_MODALITY, combo)
            detail = QTableWidgetItem(guess.reason)
            detail.setToolTip(guess.reason)
            item.setToolTip(layer.source())
            detail.setFlags(detail.flags() & ~Qt.ItemFlag.ItemIsEditable)
            self.table.setItem(row, COL_DETAIL, detail)
            typed = self.typed.get(layer.id(), ["", "", ""])
            shown = [*typed[:2], typed[2] or layer_date_text(layer.source(), self.headers)]
            for col, text in zip(EDITABLE, shown, strict=True):
                self.table.setItem(row, col, QTableWidgetItem(text))
        self.table.blockSignals(False)
        self.list_grids(layers)
        self.update_choice()

    def set_typed(self, item: QTableWidgetItem) -> None:
        """The user types a layer's bands or first step; kept across refreshes."""
        if item.column() not in EDITABLE:
            return
        layer_id = self.table.item(item.row(), COL_LAYER).data(Qt.ItemDataRole.UserRole)
        self.typed.setdefault(layer_id, ["", "", ""])[EDITABLE[item.column()]] = item.text()
        self.update_choice()

    def list_models(self, *_args) -> None:
        """The model choices of the task: automatic, then each of its models; a choice is kept."""
        kept = self.model_combo.currentData()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItem(tr("automatic (by sensors and location)"), None)
        for m in self.models:
            if m.task == self.task_combo.currentData():
                self.model_combo.addItem(m.title, str(m.file))
        self.model_combo.setCurrentIndex(max(self.model_combo.findData(kept), 0))
        self.model_combo.blockSignals(False)
        self.update_choice()

    def list_grids(self, layers: list[QgsRasterLayer]) -> None:
        """The output grid choices: the finest input, then every listed layer; a choice is kept."""
        kept = self.grid_combo.currentData()
        self.grid_combo.clear()
        self.grid_combo.addItem(tr("the finest input"), None)
        for layer in layers:
            self.grid_combo.addItem(layer.name(), layer.source())
        self.grid_combo.setCurrentIndex(max(self.grid_combo.findData(kept), 0))

    def set_modality(self, layer_id: str, modality: str) -> None:
        """The user corrects a recognised modality; kept across refreshes."""
        self.overrides[layer_id] = modality
        self.update_choice()

    def selected_layers(self) -> dict[str, list[QgsRasterLayer]]:
        by_modality: dict[str, list[QgsRasterLayer]] = {}
        project = QgsProject.instance()
        for row in range(self.table.rowCount()):
            modality = self.table.cellWidget(row, COL_MODALITY).currentText()
            layer = project.mapLayer(self.table.item(row, COL_LAYER).data(Qt.ItemDataRole.UserRole))
            if layer is None or modality == IGNORE:
                continue
            for m in self.recognitions[layer.id()].modalities if modality == ALL else (modality,):
                by_modality.setdefault(m, []).append(layer)
        return by_modality

    def update_choice(self, *_args) -> None:
        missing = missing_packages()
        self.install_button.setVisible(bool(missing))
        if missing:
            self.choice.setText(install_hint(missing))
            self.run_button.setEnabled(False)
            return
        available = set(self.selected_layers())

        def problems_in(m) -> str:
            try:
                return input_problems(self.request(m), self.card_of(m))
            except ValueError as exc:  # a first step that is not a number
                return str(exc)

        problems_of = cache(problems_in)
        outline = layers_outline([lyr.source() for found in self.selected_layers().values() for lyr in found],
                                 self.headers)
        picked = [m for m in self.models if str(m.file) == self.model_combo.currentData()]
        try:  # among the models whose inputs are complete, at the layers' place; a model picked is kept
            model, reason = (picked[0], tr("Model picked: '{}'.").format(picked[0].title)) if picked else \
                select_model(self.models, self.task_combo.currentData(), available, problems_of, outline)
        except NoModelError as exc:
            self.choice.setText(str(exc))
            self.show_place_warning("")
            self.run_button.setEnabled(False)
            return
        self.chosen = model
        problems = problems_of(model)
        self.choice.setText(reason + ("\n" + problems if problems else ""))
        outside = model.outside(outline) if outline is not None else None
        self.show_place_warning(outside.message if outside else "")
        self.run_button.setEnabled(self.task is None and not problems)

    def show_place_warning(self, message: str) -> None:
        """Say before Run that the layers lie outside the model's footprint: under the choice, and
        once in the message bar at warning level (not again while nothing changes)."""
        self.place_warning.setText(tr("Warning: {}.").format(message) if message else "")
        self.place_warning.setVisible(bool(message))
        if message and message != self.warned and self.iface is not None:
            self.iface.messageBar().pushMessage(tr("EO missing modalities"), message,
                                                level=Qgis.MessageLevel.Warning)
        self.warned = message

    def card_of(self, model) -> ModelCard:
        """The card of a bundled model, read once per panel (not on every combo change)."""
        if model.file not in self.cards:
            self.cards[model.file] = read_card(model.file)
        return self.cards[model.file]

    def show_install_dialog(self) -> None:
        from .install_dialog import show_install_dialog

        dialog = show_install_dialog(self.iface.mainWindow() if self.iface else self)
        if dialog is not self.install_dialog:  # connect once, also when the dialog is reopened
            dialog.done.connect(self.update_choice)
            self.install_dialog = dialog

    # -- running --------------------------------------------------------------------------------
    def request(self, model) -> PredictionRequest:
        """What running ``model`` on the selected layers means, with a new output name."""
        stem = f"{model.name}_{time.strftime('%Y%m%d_%H%M%S')}"
        return PredictionRequest(
            model_path=str(model.file),
            layers={m: [(lyr.source(), lyr.name()) for lyr in found]
                    for m, found in self.selected_layers().items() if m in model.modalities},
            output=str(Path(self.output_dir.filePath()) / f"{stem}.tif"),
            reference=self.grid_combo.currentData(),
            headers=self.headers,
            mapping=self.mapping(),
        )

    def mapping(self) -> dict[str, LayerMapping]:
        """The bands, first steps and dates typed in the table, by GDAL source (a typed date wins
        over the first step)."""
        project = QgsProject.instance()
        out = {}
        for layer_id, (bands, first, date) in self.typed.items():
            layer = project.mapLayer(layer_id)
            if layer is not None:
                out[layer.source()] = LayerMapping.from_text(bands, date.strip() or first, layer.name())
        return out

    def run(self) -> None:
        model = self.chosen
        request = self.request(model)
        self.task = PredictionTask(request, tr("Predicting {}").format(model.title))
        self.task.progressChanged.connect(lambda p: self.progress.setValue(int(p)))
        self.task.status.connect(lambda text: self.progress.setFormat(text))
        self.task.taskCompleted.connect(self.on_completed)
        self.task.taskTerminated.connect(self.on_terminated)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setFormat(PROGRESS_FORMAT)
        QgsApplication.taskManager().addTask(self.task)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _done(self) -> PredictionTask:
        task, self.task = self.task, None
        self.cancel_button.setEnabled(False)
        self.progress.setFormat(PROGRESS_FORMAT)
        self.update_choice()
        return task

    def on_completed(self) -> None:
        task = self._done()
        card = task.result.card
        for kind in OutputKind:
            path = task.result.outputs.get(kind)
            if path:
                layer = QgsRasterLayer(path, kind)
                style_layer(layer, card, kind)
                QgsProject.instance().addMapLayer(layer)
        self.progress.setValue(100)
        message = tr("{} done in {:.1f} s on {}.").format(card.title, task.seconds, task.result.provider)
        if task.result.months:  # which months the map rests on, and which it lacks
            message += " " + task.result.months + "."
        if task.result.provider_note:
            message += " " + tr("GPU not used: {}.").format(task.result.provider_note)
        for warning in task.result.warnings:  # e.g. an encoding the values proved wrong, replaced
            message += " " + warning + "."
        self.report(message, Qgis.MessageLevel.Warning if task.result.warnings else Qgis.MessageLevel.Success)

    def on_terminated(self) -> None:
        task = self._done()
        self.progress.setValue(0)
        if task.error:
            self.report(task.error, Qgis.MessageLevel.Critical)
        else:
            self.report(tr("Prediction cancelled; nothing was written."), Qgis.MessageLevel.Info)

    def copy_diagnostics(self) -> None:
        copy_diagnostics()
        self.report(tr("Diagnostics copied to the clipboard."), Qgis.MessageLevel.Info)

    def report(self, message: str, level: Qgis.MessageLevel) -> None:
        if self.iface is not None:
            self.iface.messageBar().pushMessage(tr("EO missing modalities"), message, level=level)
        self.finished.emit(message, level)

    def teardown(self) -> None:
        """Disconnect from the project and stop a running task (the plugin is unloading)."""
        project = QgsProject.instance()
        project.layersAdded.disconnect(self.refresh)
        project.layersRemoved.disconnect(self.refresh)
        self.cancel()
