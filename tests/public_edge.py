"""`collab ...` as on an untested uvicorn: the fence's check made to fail, then the CLI.

`python tests/public_edge.py serve ...` runs `collab serve` as it would run on a uvicorn
outside the tested range (FENCE_BREAK=version, the default) or on one that lost a private
member the fast path uses (FENCE_BREAK=member): it must serve on uvicorn's stock
protocols, and say why once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collab.server import internals

UNTESTED_UVICORN = "0.99.0"
MISSING = internals.Member(internals.WS, "a_member_no_release_has", params=())


def untested_versions() -> dict[str, str]:
    return {"uvicorn": UNTESTED_UVICORN, "websockets": "17.4", "h11": "0.16.0"}


def main() -> None:
    if os.environ.get("FENCE_BREAK", "version") == "member":
        internals.MEMBERS = (*internals.MEMBERS, MISSING)
    else:
        internals.installed_versions = untested_versions
    from collab.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
