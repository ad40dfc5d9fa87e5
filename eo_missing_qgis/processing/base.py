"""The base class of this plugin's Processing algorithms: naming, translation, instances and help
come from class attributes (data), so each algorithm holds only its parameters and its run."""

from __future__ import annotations

from html import escape

from qgis.core import QgsProcessingAlgorithm, QgsProcessingParameterEnum
from qgis.PyQt.QtCore import QCoreApplication


class EoMissingAlgorithm(QgsProcessingAlgorithm):
    """Subclasses set the class attributes below and write ``initAlgorithm``/``processAlgorithm``."""

    #: Stable id used by qgis_process, batch files and models (never translated).
    ID = ""
    #: Shown name, group and the help panel's introduction (English; translated by :meth:`tr`).
    DISPLAY_NAME = ""
    GROUP = ""
    GROUP_ID = ""
    INTRO = ""

    def tr(self, text: str) -> str:
        """Translate ``text`` with the algorithm's class name as the context."""
        return QCoreApplication.translate(type(self).__name__, text)

    def name(self) -> str:
        """The stable id."""
        return self.ID

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        """The translated name shown in the toolbox."""
        return self.tr(self.DISPLAY_NAME)

    def group(self) -> str:
        """The translated group shown in the toolbox."""
        return self.tr(self.GROUP)

    def groupId(self) -> str:  # noqa: N802 - QGIS API
        """The stable group id."""
        return self.GROUP_ID

    def createInstance(self) -> EoMissingAlgorithm:  # noqa: N802 - QGIS API
        """A fresh copy, as QGIS needs one per run."""
        return type(self)()

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        """The introduction, then every parameter's description and help, in the dialog's order."""
        lines = [f"<b>{escape(p.description())}</b>: {escape(p.help())}"
                 for p in self.parameterDefinitions() if p.help()]
        return self.tr(self.INTRO) + "\n\n" + "\n".join(lines)

    def static_enum_names(self, parameters: dict) -> dict:
        """``parameters`` with a number given for a static-string enum replaced by its option:
        qgis_process's help offers 'TASK=1', which QGIS refuses for such enums (or, past the
        check, silently takes as the default)."""
        out = dict(parameters)
        for p in self.parameterDefinitions():
            if not (isinstance(p, QgsProcessingParameterEnum) and p.usesStaticStrings()):
                continue
            value = out.get(p.name())
            if isinstance(value, bool) or value in p.options():
                continue
            if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
                index = int(value)
                if 0 <= index < len(p.options()):
                    out[p.name()] = p.options()[index]
        return out

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS API
        """QGIS's checks, with static-string enums given by number accepted too."""
        return super().checkParameterValues(self.static_enum_names(parameters), context)

    def enum_text(self, parameters, name: str, context) -> str:
        """The option of a static-string enum, given by name or by number."""
        return self.parameterAsEnumString(self.static_enum_names(parameters), name, context)

    def set_help(self, texts: dict[str, str]) -> None:
        """Parameter help written once: shown as tooltips and in :meth:`shortHelpString`."""
        for name, text in texts.items():
            self.parameterDefinition(name).setHelp(text)
