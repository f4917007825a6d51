"""``python -m threadweaver_operator.kubectl``: the same as ``kubectl threadweaver``."""

import sys

from .main import main

sys.exit(main())
