"""Entry point of ``python -m eo_missing_qgis.core``."""

import sys

from .cli import main

sys.exit(main())
