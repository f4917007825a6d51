"""`threadweaver serve` without the runtime's metrics: the composition root's
`install_metrics(self)` (threadweaver.observability.install, server.py) made a no-op, so no
timing wrapper, recorder, lag tracker or collector is set up. Everything else is the runtime as
shipped (the HTTP edge's request metrics included, and the counts the command gateway and the
entities keep inline, application/stats.py). Workload 1 runs it beside the runtime with its metrics
to measure what they cost (bench/w1_http.py, `--set http_modes=...,full-nometrics`).

    python -m bench.nometrics_server serve --host 127.0.0.1 --port P --data-dir D ...
"""

from __future__ import annotations

import sys
from typing import Any


def main() -> int:
    import threadweaver.observability as observability

    def not_installed(runtime: Any, registry: Any = None) -> None:
        return None

    observability.install = not_installed  # type: ignore[assignment]
    from threadweaver.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
