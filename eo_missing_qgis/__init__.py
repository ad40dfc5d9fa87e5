"""EO missing modalities: run the right single-sensor student for the layers a user has."""


def classFactory(iface):  # noqa: N802 - name fixed by QGIS
    from .plugin import EoMissingPlugin

    return EoMissingPlugin(iface)
