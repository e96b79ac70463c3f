"""A big document's whole state over HTTP (`GET /api/docs/{name}/update`) against the
event loop: what one reader with read access costs every other document of the process.

    python bench/big_document_state.py              # a 64 MiB document
    python bench/big_document_state.py --mib 16 --main /work/main   # also another checkout

One collab server (`--fsync never`, pinned to core 0) as `big_document_servers.py` runs it:
a control document gets a small edit every 20 ms from one peer, timed until another peer
receives it. The phases: `upload` (the big document in 256 KB appends: detached past
`--detach-from-bytes`), `state` (`GET .../update` of it, the time until the whole body is
read), `appends` (its writer goes on, an append every 50 ms for 3 s: an attached 64 MiB
document pays pycrdt ~40 ms per append). Printed: each phase's time, the control's p99 and
worst latency, the loop's worst lag (/metrics) and how often the server rebuilt pycrdt.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from big_document_servers import Control, LagByPhase, upload
from targets import DEFAULT_COLLAB, Server, load_average, pin

MiB = 1024 * 1024
REBUILT = "a reader needed the pycrdt document: rebuilt"


def state_seconds(server: Server) -> tuple[float, int, str]:
    """`GET /api/docs/big/update`: seconds, bytes and X-Collab-Rev (or "-")."""
    start = time.perf_counter()
    url = f"http://127.0.0.1:{server.port}/api/docs/big/update"
    with urllib.request.urlopen(url, timeout=600) as response:
        body = response.read()
        rev = response.headers.get("x-collab-rev", "-")
    return time.perf_counter() - start, len(body), rev


async def measure(server: Server, mib: int) -> None:
    control = Control()
    controlling = asyncio.create_task(control.run(server))
    lags = LagByPhase(server)
    times: dict[str, str] = {}

    async def phase(name: str) -> None:
        await lags.enter(name)
        control.phase = name
        print(f"  {name}...", flush=True)

    await phase("upload")
    start = time.perf_counter()
    writer, _, encoder = await upload(server, mib)
    times["upload"] = f"{time.perf_counter() - start:7.1f} s"
    await phase("idle")
    await asyncio.sleep(2)
    await phase("state")
    took, size, rev = await asyncio.to_thread(state_seconds, server)
    times["state"] = f"{took:7.2f} s"
    print(f"  the state: {size / MiB:.1f} MiB at revision {rev}")
    await phase("appends")
    for n in range(60):
        await writer.send(encoder.message(f"#A{n};"))  # type: ignore[attr-defined]
        await asyncio.sleep(0.05)
    await lags.enter("end")
    control.phase = "end"
    control.stop.set()
    await controlling
    await writer.close()  # type: ignore[attr-defined]
    print(f"  {'phase':<10} {'time':>10}   control p99 / worst (ms)   loop lag")
    for name in ("upload", "idle", "state", "appends"):
        row = f"  {name:<10} {times.get(name, ''):>10}   {control.row(name)}"
        print(f"{row}   {lags.worst.get(name, 'n/a'):>12}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--main", type=Path, help="also collab from this checkout (before)")
    args = parser.parse_args()
    pin(1)
    runs: list[tuple[str, str]] = [("", DEFAULT_COLLAB)]
    if args.main is not None:
        python = DEFAULT_COLLAB.replace(" -m", " -P -m")  # -P: not this checkout from the cwd
        runs.append(("-main", f"env PYTHONPATH={shlex.quote(str(args.main))} {python}"))
    extra = ["--max-document-bytes", str(2 * args.mib * MiB + 4 * MiB), "--log-level", "info"]
    with tempfile.TemporaryDirectory(prefix="collab-state-") as workdir:
        for label, command in runs:
            print(f"collab{label} (load {load_average():.2f})", flush=True)
            server = Server("fast", Path(workdir), label=label, collab_command=command, extra=extra)
            with server:
                asyncio.run(measure(server, args.mib))
            rebuilt = server.log_path.read_text(errors="replace").count(REBUILT)
            print(f"  pycrdt rebuilt by a reader: {rebuilt} time(s)")


if __name__ == "__main__":
    main()
