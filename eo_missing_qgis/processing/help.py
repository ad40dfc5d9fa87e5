"""Parameter help written once: shown as tooltips (``setHelp``) and in the algorithm's help panel."""

from __future__ import annotations

from html import escape

from qgis.core import QgsProcessingAlgorithm


def set_help(algorithm: QgsProcessingAlgorithm, texts: dict[str, str]) -> None:
    for name, text in texts.items():
        algorithm.parameterDefinition(name).setHelp(text)


def help_text(algorithm: QgsProcessingAlgorithm, intro: str) -> str:
    """The intro, then every parameter's description and help, in the dialog's order."""
    lines = [f"<b>{escape(p.description())}</b>: {escape(p.help())}"
             for p in algorithm.parameterDefinitions() if p.help()]
    return intro + "\n\n" + "\n".join(lines)
