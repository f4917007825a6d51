"""`threadweaver serve` with a prototype from bench/proposals.py swapped in, to measure a
proposal end to end without editing the runtime:

    python -m bench.run_patched --patch projector-p0 -- serve --host 127.0.0.1 ...

projector-p0:      the RMUs are `P0Projector` (proposals P0 + P12: the shards an append touched
                   are read in one query and applied in one transaction; "behind" judged
                   against the offsets pushed before the read).
projector-p12:     the RMUs have only the P12 change.
"""
from __future__ import annotations

import argparse
import sys

PATCHES = ("projector-p0", "projector-p12")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--patch", choices=PATCHES, action="append", default=[])
    p.add_argument("rest", nargs=argparse.REMAINDER)
    a = p.parse_args()
    if "projector-p0" in a.patch or "projector-p12" in a.patch:
        from threadweaver.application import sharding

        from .proposals import p0_projector_class
        sharding.Projector = p0_projector_class(batch_reads="projector-p0" in a.patch)
    from threadweaver.cli import main as tw_main
    return tw_main([x for x in a.rest if x != "--"])


if __name__ == "__main__":
    sys.exit(main())
