"""Typing latency of the editor page in Chromium, in a 1,000,000-character document.

    flock /work/wt/bench.lock python bench/typing.py            # 30 keys a place
    flock /work/wt/bench.lock python bench/typing.py --keys 10 --trace /tmp/typing
    flock /work/wt/bench.lock python bench/typing.py --baseline /work/main  # before/after
    python bench/typing.py --rows page-1M --keys 20              # some rows only

Starts `collab serve` (fsync never) on a free loopback port, makes a document of about a
million code points (lines of varied length, emoji with ZWJ and skin tones, CJK, combining
marks) with `PUT /api/docs/{name}`, opens its page in Chromium and connects two other peers
(text-op clients over a WebSocket) whose selections the page draws as remote carets: one
near the end, one in the middle. Then it types `--keys` characters at the end, in the
middle and at the top of the text, one at a time, and prints each place's per-key latency
and work (below): median, p95 and max, in ms.

A key's latency is from its keydown (`event.timeStamp`, when the browser made the event)
to the end of the next frame's rendering after the page's work: a requestAnimationFrame
callback registered in the keydown posts a message, and a posted message runs only after
that frame's style, layout and paint. It includes the wait for the next frame (up to one
frame, 16.7 ms, however little the work). A key's work is the main thread's time for it
without that wait: from the keydown to the end of the input event's handlers (or of the
beforeinput's, when the page makes the edit itself and the browser fires no input), plus from
the frame's start to the end of its rendering; under 16 ms, the key is drawn in the next
frame. The Event Timing API's count of keys over 16 ms (its durations come in steps of
8 ms, so keys drawn in exactly the next frame may count too) is the ">16" column.

Rows: the page (`page-1M`, its block view: frontend/blockview.js), a bare full-window
`<textarea>` with the same text, wrapping (`bare-1M`) and not (`bare-1M-nowrap`), a bare
editable div of 50-line blocks that Chromium lays out only when they are on screen, with
no script (`blocks-1M`: the floor of the page's view), and the same four for a
3,000-character text. `--baseline
DIR` also measures the page served from another checkout (`page-1M (baseline)`).
`--trace DIR` also records, for the page and the bare textarea at 1M, a Chromium
performance trace of `--keys` keys in the middle (DIR/page/trace.json, DIR/bare/..., each
summarised: the main thread's self time by kind and by event) and a V8 CPU profile (the
functions with the most self time). Every row has a time budget
(`--row-seconds`); the script stops by itself. Numbers, not a test: the machine is
shared, so compare the rows of one run and say `uptime` beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NAME = "typing 中文 😀"
LINES = [
    "The quick brown fox jumps over the lazy dog, again and again and again.",
    "👩‍👩‍👧 family, 👍🏽 thumbs, 🇫🇷 flag",
    "中文字符和日本語のテキスト、한국어 문장도 있습니다。",
    "e\u0301 combining marks: a\u0300 o\u0302 n\u0303",
    "",
    "short",
    "A long line " + "lorem ipsum dolor sit amet " * 12,
]
ROWS = [
    "page-1M",
    "bare-1M",
    "bare-1M-nowrap",
    "blocks-1M",
    "page-3k",
    "bare-3k",
    "bare-3k-nowrap",
    "blocks-3k",
]
PLACES = ["end", "middle", "top"]

# Installed before any page script: each keydown's latency to the end of the next frame.
PROBE = """
window.__lat = [];
window.__work = [];
window.__evt = [];
// The end of the key's input handlers: its input event's, or its beforeinput's when the
// page handles the key there and prevents the browser's own edit (so no input event).
let handled = 0;
addEventListener("beforeinput", () => { handled = performance.now(); });
addEventListener("input", () => { handled = performance.now(); });
addEventListener("keydown", (event) => {
  if (event.key.length !== 1) return;
  const t0 = event.timeStamp;
  const start = performance.now();
  requestAnimationFrame(() => {
    const frame = performance.now();
    const done = Math.max(start, handled);
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      const end = performance.now();
      window.__work.push(done - start + (end - frame));
      window.__lat.push(end - t0);
    };
    channel.port2.postMessage(0);
  });
}, true);
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (e.name === "keydown") window.__evt.push(e.duration);
}).observe({ type: "event", durationThreshold: 16, buffered: true });
"""

BARE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
html, body { height: 100%; margin: 0; }
textarea { box-sizing: border-box; width: 100%; height: 100%; border: 0; margin: 0;
  padding: 1rem 1.5rem; resize: none;
  font: 16px/1.5 ui-monospace, "SFMono-Regular", Menlo, Consolas, "Noto Sans Mono", monospace; }
</style></head><body><textarea id="text" spellcheck="false"></textarea></body></html>"""


def make_text(code_points: int) -> str:
    """About `code_points` code points of mixed lines, ending in a line break."""
    out: list[str] = []
    size = 0
    k = 0
    while size < code_points:
        line = LINES[k % len(LINES)] + f" {k}\n"
        out.append(line)
        size += len(line)
        k += 1
    return "".join(out)[:code_points]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `collab serve` subprocess with fsync off, in a temporary directory."""

    def __init__(self, workdir: Path, root: Path = ROOT) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = open(workdir / "server.log", "ab")  # noqa: SIM115 - the child's output
        command = [sys.executable, "-m", "collab", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--data-dir", str(workdir / "data")]
        command += ["--fsync", "never"]
        env = {**os.environ, "PYTHONPATH": str(root)}
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=root
        )
        deadline = time.monotonic() + 30
        while not self.healthy():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("the server did not start: see server.log")
            time.sleep(0.05)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def put(self, name: str, text: str) -> None:
        request = urllib.request.Request(
            f"{self.url}/api/docs/{quote(name, safe='')}?replace=1",
            data=text.encode(),
            method="PUT",
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class Peers:
    """Text-op peers on their own event loop in a thread: each says hello, puts its
    selection at a place, and reads (and drops) everything the server sends."""

    def __init__(self, ws_url: str, places: list[tuple[str, int]]) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stopping: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, args=(ws_url, places), daemon=True)
        self.thread.start()
        if not self.ready.wait(60):
            raise SystemExit("the remote peers did not join")

    def _run(self, ws_url: str, places: list[tuple[str, int]]) -> None:
        self.loop.run_until_complete(self._main(ws_url, places))

    async def _main(self, ws_url: str, places: list[tuple[str, int]]) -> None:
        from websockets.asyncio.client import connect

        self.stopping = asyncio.Event()
        sockets = []
        for k, (user, at) in enumerate(places):
            ws = await connect(ws_url, max_size=None, compression=None, proxy=None)
            secret = f"bench-typing-peer-{k}-0123456789"
            await ws.send(json.dumps({"type": "hello", "secret": secret, "rev": None}))
            welcome = json.loads(await ws.recv())
            color = ["#8e24aa", "#00897b"][k % 2]
            presence = {"type": "presence", "rev": welcome["rev"], "selection": [[at, at]]}
            presence["user"] = {"name": user, "color": color}
            await ws.send(json.dumps(presence))
            sockets.append(ws)
        self.ready.set()
        drains = [asyncio.ensure_future(self._drain(ws)) for ws in sockets]
        await self.stopping.wait()
        for ws in sockets:
            await ws.close()
        await asyncio.gather(*drains, return_exceptions=True)

    async def _drain(self, ws) -> None:
        async for _ in ws:
            pass

    def stop(self) -> None:
        if self.stopping is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(10)


def summary(values: list[float]) -> str:
    if not values:
        return "no keys"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered):7.1f}  p95 {p95:7.1f}  max {ordered[-1]:7.1f}"


def place_caret(page, place: str) -> None:
    """Put the caret at `place` of the text and scroll it into view (the page's view and
    the bare blocks both hold the text in block divs, one text node first in each)."""
    page.evaluate(
        """place => {
          const ta = document.querySelector('#text');
          if (ta.tagName !== 'TEXTAREA') {
            const blocks = ta.children;
            const block = blocks[place === 'end' ? blocks.length - 1 : place === 'top' ? 0
              : blocks.length >> 1];
            const node = block.firstChild;
            ta.focus();
            getSelection().collapse(node, place === 'end' ? node.length : 0);
            block.scrollIntoView({ block: 'center' });
            return;
          }
          const n = ta.value.length;
          let at = place === 'end' ? n : place === 'top' ? 0 : Math.floor(n / 2);
          if (place === 'middle') at = ta.value.indexOf('\\n', at) + 1;
          ta.blur();
          ta.setSelectionRange(at, at);
          ta.focus();
        }""",
        place,
    )
    page.keyboard.press("ArrowLeft")  # the browser scrolls the caret into view
    page.keyboard.press("ArrowRight")


def type_keys(page, keys: int, deadline: float) -> list[list[float]]:
    """Type `keys` characters one at a time, each after the last one's frame."""
    page.evaluate("() => { window.__lat = []; window.__work = []; window.__evt = []; }")
    for k in range(keys):
        if time.monotonic() > deadline:
            break
        page.keyboard.type("ab c"[k % 4])
        page.wait_for_function("n => window.__lat.length >= n", arg=k + 1, timeout=60_000)
    return page.evaluate("[window.__lat, window.__work, window.__evt]")


def open_page(browser, server: Server, name: str):
    context = browser.new_context(viewport={"width": 1000, "height": 700}, bypass_csp=True)
    context.add_init_script(PROBE)
    context.add_init_script("localStorage.setItem('collab.name', 'Typist')")
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{server.url}/d/{quote(name, safe='')}")
    page.wait_for_function("window.collab && window.collab.client.state === 'saved'")
    page.wait_for_function("window.collab.client.presence.size >= 2")
    page.wait_for_function("document.querySelectorAll('.carets-caret').length >= 2")
    return context, page


# A view that lays out only what is visible: an editable div of blocks of 50 lines each,
# every block `content-visibility: auto` (Chromium skips the layout and paint of the blocks
# off screen, and keeps the size they last had).
BLOCKS_PAGE = BARE_PAGE.replace(
    '<textarea id="text" spellcheck="false"></textarea>',
    '<div id="text" contenteditable="plaintext-only" spellcheck="false"></div>',
).replace(
    "</style>",
    "#text { overflow: auto; white-space: pre-wrap; outline: none; }"
    " #text > div { content-visibility: auto; contain-intrinsic-size: auto 1800px; }</style>",
)
FILL_BLOCKS = """text => {
  const view = document.querySelector('#text');
  const lines = text.split('\\n');
  for (let k = 0; k < lines.length; k += 50) {
    const block = document.createElement('div');
    block.textContent = lines.slice(k, k + 50).join('\\n');
    view.append(block);
  }
}"""


def open_blocks(browser, text: str):
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.set_content(BLOCKS_PAGE)
    page.evaluate(PROBE)
    page.evaluate(FILL_BLOCKS, text)
    return context, page


def open_bare(browser, text: str, wrap: bool):
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.set_content(BARE_PAGE)
    page.evaluate(PROBE)  # after set_content: document.open drops the window's listeners
    page.evaluate(
        "([text, wrap]) => { const ta = document.querySelector('#text');"
        " if (!wrap) ta.setAttribute('wrap', 'off'); ta.value = text; }",
        [text, wrap],
    )
    return context, page


def measure(page, keys: int, seconds: float, label: str) -> None:
    deadline = time.monotonic() + seconds
    for place in PLACES:
        place_caret(page, place)
        type_keys(page, 3, deadline)  # warm up: the first keys after a jump pay for it
        lat, work, evt = type_keys(page, keys, deadline)
        over = sum(1 for d in evt if d > 16)
        print(f"{label:15} {place:6} {len(lat):3} keys  latency {summary(lat)}")
        print(f"{'':22} {over:3} >16  work    {summary(work)}")
        sys.stdout.flush()


def trace(browser, page, keys: int, out: Path) -> None:
    """A performance trace and a CPU profile of `keys` keys typed in the middle."""
    out.mkdir(parents=True, exist_ok=True)
    place_caret(page, "middle")
    type_keys(page, 3, time.monotonic() + 120)
    categories = ["devtools.timeline", "disabled-by-default-devtools.timeline", "blink", "v8"]
    browser.start_tracing(page=page, categories=categories)
    type_keys(page, keys, time.monotonic() + 300)
    (out / "trace.json").write_bytes(browser.stop_tracing())
    cdp = page.context.new_cdp_session(page)
    cdp.send("Profiler.enable")
    cdp.send("Profiler.setSamplingInterval", {"interval": 200})
    cdp.send("Profiler.start")
    type_keys(page, keys, time.monotonic() + 300)
    profile = cdp.send("Profiler.stop")["profile"]
    (out / "profile.cpuprofile").write_text(json.dumps(profile))
    print_trace(json.loads((out / "trace.json").read_text()), keys)
    print_profile(profile, keys)


KINDS = {
    "script": {
        "FunctionCall",
        "EvaluateScript",
        "v8.compile",
        "TimerFire",
        "EventDispatch",
        "FireAnimationFrame",
        "MajorGC",
        "MinorGC",
        "V8.GCScavenger",
        "V8.GCFinalizeMC",
        "V8.GC_MC_BACKGROUND_MARKING",
        "v8.callFunction",
        "RunMicrotasks",
        "FireIdleCallback",
        "v8.run",
    },
    "style": {"UpdateLayoutTree", "RecalculateStyles", "ParseAuthorStyleSheet"},
    "layout": {"Layout", "UpdateLayerTree", "IntersectionObserverController::computeIntersections"},
    "paint": {
        "Paint",
        "PrePaint",
        "Layerize",
        "PaintImage",
        "CompositeLayers",
        "Commit",
        "UpdateLayer",
        "RasterTask",
        "Decode Image",
    },
}


def print_trace(data: dict, keys: int) -> None:
    """The renderer main thread's self time per event name and per kind, per key."""
    events = data["traceEvents"] if isinstance(data, dict) else data
    mains = {
        (e["pid"], e["tid"])
        for e in events
        if e.get("name") == "thread_name" and e.get("args", {}).get("name") == "CrRendererMain"
    }
    spans = [
        e
        for e in events
        if (e.get("pid"), e.get("tid")) in mains and e.get("ph") == "X" and "dur" in e
    ]
    busiest = max(mains, key=lambda m: sum(e["dur"] for e in spans if (e["pid"], e["tid"]) == m))
    spans = sorted(
        (e for e in spans if (e["pid"], e["tid"]) == busiest), key=lambda e: (e["ts"], -e["dur"])
    )
    self_time: dict[str, float] = {}
    stack: list[dict] = []
    for e in spans:
        while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"]:
            stack.pop()
        if stack:
            parent = stack[-1]["name"]
            self_time[parent] = self_time.get(parent, 0.0) - e["dur"]
        self_time[e["name"]] = self_time.get(e["name"], 0.0) + e["dur"]
        stack.append(e)
    kinds: dict[str, float] = {}
    for name, us in self_time.items():
        kind = next((k for k, names in KINDS.items() if name in names), "other")
        kinds[kind] = kinds.get(kind, 0.0) + us
    print(f"trace, renderer main thread, ms per key ({keys} keys):")
    for kind, us in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:8} {us / 1000 / keys:8.2f}")
    for name, us in sorted(self_time.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {name:40} {us / 1000 / keys:8.2f}")


def print_profile(profile: dict, keys: int) -> None:
    """The JavaScript functions with the most self time, per key."""
    nodes = {n["id"]: n for n in profile["nodes"]}
    deltas = profile.get("timeDeltas", [])
    per_node: dict[int, float] = {}
    for sample, delta in zip(profile.get("samples", []), [*deltas[1:], 0], strict=False):
        per_node[sample] = per_node.get(sample, 0.0) + delta
    per_function: dict[str, float] = {}
    for node_id, us in per_node.items():
        frame = nodes[node_id]["callFrame"]
        where = Path(frame["url"]).name if frame["url"] else ""
        key = f"{frame['functionName'] or '(anonymous)'} {where}:{frame['lineNumber'] + 1}"
        per_function[key] = per_function.get(key, 0.0) + us
    print(f"CPU profile, self time, ms per key ({keys} keys):")
    for key, us in sorted(per_function.items(), key=lambda kv: -kv[1])[:15]:
        print(f"    {key:50} {us / 1000 / keys:8.2f}")


def run_size(browser, servers: dict[str, Server], size: str, text: str, args) -> None:
    """Every row of one text size; the page's rows on every server."""
    rows = [r for r in args.rows if r.endswith(size)]
    name = f"{NAME} {size}"
    n = len(text)
    peers = []
    try:
        for server in servers.values():
            server.put(name, text)
            url = f"ws://127.0.0.1:{server.port}/ot/{quote(name, safe='')}"
            peers.append(Peers(url, [("Ada", n - 40), ("Bob", n // 2 - 40)]))
        for row in rows:
            for label, server in servers.items() if row.startswith("page") else [("", None)]:
                if server is not None:
                    context, page = open_page(browser, server, name)
                elif row.startswith("blocks"):
                    context, page = open_blocks(browser, text)
                else:
                    context, page = open_bare(browser, text, not row.endswith("nowrap"))
                measure(page, args.keys, args.row_seconds, row + label)
                context.close()
        if args.trace and size == "1M":
            for kind in ("page", "bare"):
                if kind == "page":
                    context, page = open_page(browser, servers[""], name)
                else:
                    context, page = open_bare(browser, text, True)
                print(f"--- {kind}-1M")
                trace(browser, page, args.keys, args.trace / kind)
                context.close()
    finally:
        for peer in peers:
            peer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=30, help="keys typed at each place")
    parser.add_argument("--size", type=int, default=1_000_000, help="code points of the big text")
    parser.add_argument("--rows", nargs="*", default=ROWS, choices=ROWS)
    parser.add_argument("--row-seconds", type=float, default=240, help="time budget of a row")
    parser.add_argument("--trace", type=Path, help="a directory for a trace of the page at 1M")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout whose page is measured too (before)"
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    texts = {"1M": make_text(args.size), "3k": make_text(3_000)}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        servers = {"": Server(Path(tmp) / "this")}
        if args.baseline:
            servers[" (baseline)"] = Server(Path(tmp) / "baseline", args.baseline.resolve())
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for size, text in texts.items():
                run_size(browser, servers, size, text, args)
        finally:
            browser.close()
            for server in servers.values():
                server.stop()
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
