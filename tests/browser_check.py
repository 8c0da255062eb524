"""Open every page of the built book in headless Chromium with the network off, and report what a
reader would see broken.

    python tests/browser_check.py [_build/html] [--shots _build/browser] [--page book/intro.html]

The pages are served from a local HTTP server; every request that leaves that origin is refused
(Chromium's DevTools protocol, ``Fetch`` domain), as on a machine without network access. A page
fails on:

- a console error, an uncaught exception or a resource that did not load;
- a request that needs the network (a CDN script, a web font);
- an image that did not load;
- math that did not typeset: no MathJax output in a math element, raw ``\\(`` ``\\[`` ``$$`` left in
  the text, a MathJax error;
- an unresolved reference: an unknown glue key, numref, citation or cross-reference. Sphinx
  leaves a reference it cannot resolve as plain "xref" text, sphinxcontrib-bibtex a citation
  without a link; myst-nb drops an unknown glue key, but with ``keep_warnings`` (set in
  ``_config.yml``) its warning stays in the page as a "system message", which fails the page like
  every build warning; a raw ``{glue:text}`` or a LaTeX-style "??" fails it too;
- a link to another page of the book, or an anchor in it, that does not exist;
- a warning or a progress bar printed in a cell's output.

A full-page screenshot of each page goes to ``--shots`` (default ``_build/browser/``). Chromium is
driven over ``--remote-debugging-pipe`` with the standard library only. Exit status: 0 when every
page passes, 1 when one fails, 77 when the check cannot run (no Chromium, no built book), with
the reason on stderr.
"""
from __future__ import annotations

import argparse
import base64
import fcntl
import functools
import http.server
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "browser"
SKIP = 77
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: flags that keep Chromium quiet on a machine without network (no update, sync, or GPU)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio",
         "--hide-scrollbars", "--remote-debugging-pipe")
WIDTH, HEIGHT, MAX_SHOT_HEIGHT = 1280, 900, 16000
TIMEOUT = 60.0


class Unavailable(RuntimeError):
    """The check cannot run here (no Chromium, no built book)."""


def find_chromium() -> str:
    """The Chromium binary: ``$BNUTILS_CHROMIUM``, else the first of CANDIDATES on PATH."""
    env = os.environ.get("BNUTILS_CHROMIUM")
    if env:
        if not (Path(env).is_file() and os.access(env, os.X_OK)):
            raise Unavailable(f"BNUTILS_CHROMIUM={env} is not an executable file")
        return env
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise Unavailable(
        f"no Chromium found (looked for {', '.join(CANDIDATES)} on PATH and $BNUTILS_CHROMIUM). "
        "Install it to run the browser test, e.g. `sudo apt-get install chromium` on Debian or "
        "Ubuntu; .ci/run installs it when it runs as root.")


# ------------------------------------------------------------------------------ DevTools pipe


class DevTools:
    """Chromium driven over ``--remote-debugging-pipe``: JSON messages separated by NUL bytes, on
    file descriptors 3 (to Chromium) and 4 (from Chromium)."""

    def __init__(self, binary: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="bnutils-chromium-")
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()

        def fds() -> None:  # in the child: its ends of the pipes become fds 3 and 4
            a = fcntl.fcntl(to_child, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_child, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.log = open(Path(self.profile) / "chromium.log", "wb")
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}",
             f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, pass_fds=(3, 4),
            preexec_fn=fds)
        os.close(to_child)
        os.close(from_child)
        self._id = 0
        self._lock = threading.Lock()
        self._replies: dict[int, queue.Queue] = {}
        self.events: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._read, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self.events.put(None)
                return
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for raw in messages:
                msg = json.loads(raw)
                if "id" in msg:
                    with self._lock:
                        q = self._replies.get(msg["id"])
                    if q is not None:
                        q.put(msg)
                else:
                    self.events.put(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        with self._lock:
            self._id += 1
            mid = self._id
            self._replies[mid] = queue.Queue()
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._write, json.dumps(msg).encode() + b"\0")
        return mid

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = TIMEOUT) -> dict:
        """Send a command and wait for its reply (events keep flowing in the reader thread)."""
        mid = self.send(method, params, session)
        try:
            msg = self._replies[mid].get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"Chromium did not answer {method} within {timeout:.0f} s") \
                from None
        finally:
            with self._lock:
                self._replies.pop(mid, None)
        if "error" in msg:
            raise RuntimeError(f"{method}: {msg['error'].get('message')}")
        return msg.get("result", {})

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._write, self._read):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


# ------------------------------------------------------------------------------ local server


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request log on stderr
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) in a background thread; returns its origin."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# ------------------------------------------------------------------------------ the checks

#: runs in the page once it has loaded; returns what the checks need
PAGE_SCRIPT = r"""
(async () => {
  const wait = (ms) => new Promise(r => setTimeout(r, ms));
  const mj = window.MathJax;
  let mathjax = "absent";
  if (mj && mj.startup && mj.startup.promise) {
    const done = await Promise.race([mj.startup.promise.then(() => "typeset"),
                                     wait(30000).then(() => "timeout")]);
    mathjax = done;
  }
  const imgs = [...document.images];
  imgs.forEach(i => { i.loading = "eager"; });
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => {
    i.addEventListener("load", r); i.addEventListener("error", r); setTimeout(r, 15000); })));
  const main = document.querySelector("main") || document.body;
  const text = (root) => {
    const c = root.cloneNode(true);
    c.querySelectorAll("pre, code, script, style, mjx-container, textarea, .highlight")
      .forEach(e => e.remove());
    return c.textContent;
  };
  const mathEls = [...main.querySelectorAll(".math")];
  return {
    title: document.title,
    images: imgs.length,
    mathjax: mathjax,
    badImages: imgs.filter(i => !(i.complete && i.naturalWidth > 0))
                   .map(i => i.getAttribute("src")),
    mathElements: mathEls.length,
    mjx: document.querySelectorAll("mjx-container").length,
    untypeset: mathEls.filter(e => !e.querySelector("mjx-container"))
                      .map(e => e.textContent.trim().slice(0, 80)),
    mathErrors: [...document.querySelectorAll("mjx-merror")]
                      .map(e => (e.getAttribute("data-mjx-error") || e.textContent).slice(0, 80)),
    text: text(main),
    xrefs: [...main.querySelectorAll(".xref")].filter(e => !e.closest("a"))
                      .map(e => e.textContent.trim().slice(0, 80)),
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
    outputs: [...main.querySelectorAll(".cell_output, .output")]
                      .filter(e => !e.parentElement.closest(".cell_output, .output"))
                      .map(e => e.textContent).join("\n"),
    citations: [...main.querySelectorAll(".bibtex-citation")].filter(e => !e.querySelector("a"))
                      .map(e => e.textContent.trim().slice(0, 80)),
    systemMessages: [...main.querySelectorAll(".system-message")]
                      .map(e => e.textContent.replace(/\s+/g, " ").trim().slice(0, 300)),
    stderr: main.querySelectorAll(".output.stderr, .cell_output .stderr").length,
    height: Math.ceil(document.documentElement.scrollHeight),
  };
})()
"""

RAW_MATH = re.compile(r"\\\(|\\\[|\$\$|\\begin\{")
RAW_ROLE = re.compile(r"\{(glue|glue:text|glue:figure|glue:any|numref|ref|cite|cite:[pt]|eq|doc)"
                      r"\}`[^`]*`")
QUESTION_MARKS = re.compile(r"(?<![?\w])\?\?(?![?\w])")
#: a warning or a progress bar in a cell's output
NOISE = re.compile(r"\b\w*Warning\b:|\bit/s\]|\d+%\|[^|\n]*\||Executing:|\[IPKernelApp\]")


@dataclass
class PageReport:
    page: str
    failures: list[str] = field(default_factory=list)
    screenshot: Path | None = None
    seconds: float = 0.0
    formulas: int = 0
    images: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        for k, v in attrs:
            if k in ("id", "name") and v:
                self.ids.add(v)


@functools.lru_cache(maxsize=None)
def _ids(path: Path) -> frozenset[str]:
    p = _Ids()
    p.feed(path.read_text(errors="replace"))
    return frozenset(p.ids)


def broken_links(links: list[str], origin: str, html: Path, page: Path) -> list[str]:
    """Links to this origin whose page or anchor does not exist in ``html``."""
    bad = []
    for link in sorted(set(links)):
        if not link.startswith(origin + "/"):
            continue
        url, frag = urldefrag(link)
        rel = unquote(urlparse(url).path).lstrip("/")
        target = html / rel
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            bad.append(f"broken link to {rel} (no such file)")
        elif frag and target.suffix == ".html" and unquote(frag) not in _ids(target):
            bad.append(f"broken link to {rel}#{frag} (no such anchor)")
    return bad


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def judge(page: str, found: dict, network: list[str], console: list[str], origin: str,
          html: Path) -> list[str]:
    """Every failure of one page from what the browser saw."""
    failures = [f"console: {c}" for c in console]
    failures += [f"needs the network: {u}" for u in network]
    failures += [f"image did not load: {src}" for src in found["badImages"]]
    if found["mathElements"]:
        if found["mathjax"] != "typeset" or not found["mjx"]:
            failures.append(f"math not typeset: MathJax {found['mathjax']}, "
                            f"{found['mjx']} MathJax output elements for "
                            f"{found['mathElements']} math elements")
        elif found["untypeset"]:
            failures += [f"math not typeset: {t}" for t in found["untypeset"][:5]]
    failures += [f"MathJax error: {e}" for e in found["mathErrors"][:5]]
    text = found["text"]
    for m in list(RAW_MATH.finditer(text))[:3]:
        excerpt = _squash(text[max(0, m.start() - 30):m.end() + 30])
        failures.append(f"raw LaTeX in the text: ...{excerpt}...")
    for m in list(RAW_ROLE.finditer(text))[:5]:
        failures.append(f"unresolved reference: {m.group(0)}")
    for m in list(QUESTION_MARKS.finditer(text))[:3]:
        excerpt = _squash(text[max(0, m.start() - 40):m.end()])
        failures.append(f"unresolved reference (??): ...{excerpt}")
    failures += [f"unresolved reference: {x}" for x in found["xrefs"][:10]]
    failures += [f"unresolved citation: {c or '(empty)'}" for c in found["citations"][:10]]
    failures += [f"build warning in the page: {m}" for m in found["systemMessages"][:10]]
    failures += broken_links(found["links"], origin, html, html / page)
    if found["stderr"]:
        failures.append(f"{found['stderr']} stderr output(s) shown in the page")
    for m in list(NOISE.finditer(found["outputs"]))[:3]:
        out = found["outputs"]
        failures.append(f"warning or progress bar in an output: "
                        f"{_squash(out[max(0, m.start() - 20):m.end() + 60])}")
    return failures


def pages_of(html: Path) -> list[str]:
    """Every HTML page of the book, relative to ``html`` (assets excluded)."""
    return sorted(str(p.relative_to(html)) for p in html.rglob("*.html")
                  if not p.relative_to(html).parts[0].startswith("_"))


def check(html: Path = HTML, shots: Path | None = SHOTS, pages: list[str] | None = None,
          binary: str | None = None, progress=None) -> list[PageReport]:
    """Load each page (all of ``html`` by default) and return a report per page."""
    html = Path(html)
    if not (html / "index.html").is_file():
        raise Unavailable(f"no built book at {html} (run `make book` first)")
    binary = binary or find_chromium()
    pages = pages or pages_of(html)
    if shots:
        shutil.rmtree(shots, ignore_errors=True)
        Path(shots).mkdir(parents=True)
    chrome = DevTools(binary)
    server, origin = serve(html)
    reports = []
    try:
        target = chrome.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = chrome.call("Target.attachToTarget",
                              {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            chrome.call(f"{domain}.enable", session=session)
        chrome.call("Fetch.enable", {"patterns": [{"urlPattern": "*"}]}, session=session)
        chrome.call("Emulation.setDeviceMetricsOverride", {
            "width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
            session=session)
        for page in pages:
            report = _check_page(chrome, session, origin, html, page, shots)
            reports.append(report)
            if progress:
                progress(report)
    finally:
        chrome.close()
        server.shutdown()
        server.server_close()
    return reports


def _drain(chrome: DevTools, session: str, origin: str, state: dict, until: str | None,
           timeout: float) -> bool:
    """Handle events until the event ``until`` arrives (or, with None, until ``timeout``):
    answer every intercepted request (refuse those that leave ``origin``), record console
    errors and failed loads. Returns whether ``until`` arrived."""
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return until is None
        try:
            ev = chrome.events.get(timeout=min(left, 0.25))
        except queue.Empty:
            continue
        if ev is None:
            raise RuntimeError("Chromium exited")
        method, params = ev.get("method"), ev.get("params", {})
        if method == "Fetch.requestPaused":
            url = params["request"]["url"]
            if url == f"{origin}/favicon.ico":  # asked by the browser itself; the book has none
                chrome.send("Fetch.fulfillRequest", {"requestId": params["requestId"],
                                                     "responseCode": 204}, session)
            elif url.startswith(origin + "/") or url == origin:
                chrome.send("Fetch.continueRequest", {"requestId": params["requestId"]},
                            session)
            else:
                state["network"].append(url)
                chrome.send("Fetch.failRequest", {"requestId": params["requestId"],
                                                  "errorReason": "InternetDisconnected"}, session)
        elif method == "Network.requestWillBeSent":
            state["urls"][params["requestId"]] = params["request"]["url"]
        elif method == "Network.loadingFailed":
            url = state["urls"].get(params["requestId"], "?")
            if url.startswith(origin) and not params.get("canceled"):
                state["console"].append(f"failed to load {url}: {params.get('errorText')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            state["console"].append(" ".join(str(a.get("value", a.get("description", "")))
                                             for a in args)[:300])
        elif method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            state["console"].append("uncaught " + str(
                d.get("exception", {}).get("description") or d.get("text"))[:300])
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            e = params["entry"]
            state["console"].append(f"{e.get('text', '')[:200]} {e.get('url', '')}".strip())
        elif until and method == until:
            return True


REDIRECT = re.compile(r'<meta http-equiv="refresh" content="\d+;\s*url=([^"]+)"', re.I)


def _check_page(chrome: DevTools, session: str, origin: str, html: Path, page: str,
                shots: Path | None) -> PageReport:
    t0 = time.monotonic()
    report = PageReport(page)
    redirect = REDIRECT.search((html / page).read_text(errors="replace")[:2000])
    if redirect:  # index.html: only says where the book starts
        base = f"{origin}/{page}".rsplit("/", 1)[0]
        report.failures += broken_links([f"{base}/{redirect.group(1)}"], origin, html,
                                        html / page)
        report.seconds = time.monotonic() - t0
        return report
    state: dict = {"network": [], "console": [], "urls": {}}
    while True:  # events of the previous page
        try:
            chrome.events.get_nowait()
        except queue.Empty:
            break
    chrome.send("Page.navigate", {"url": f"{origin}/{page}"}, session)
    if not _drain(chrome, session, origin, state, "Page.loadEventFired", TIMEOUT):
        report.failures.append(f"page did not finish loading within {TIMEOUT:.0f} s")
    # evaluate while still answering intercepted requests (MathJax loads its fonts now)
    result: dict = {}
    done = threading.Event()

    def evaluate() -> None:
        try:
            result.update(chrome.call("Runtime.evaluate", {
                "expression": PAGE_SCRIPT, "awaitPromise": True, "returnByValue": True},
                session=session, timeout=TIMEOUT))
        except Exception as e:  # reported below
            result["error"] = str(e)
        done.set()

    threading.Thread(target=evaluate, daemon=True).start()
    while not done.is_set():
        _drain(chrome, session, origin, state, None, 0.2)
    _drain(chrome, session, origin, state, None, 0.3)  # late errors
    if "error" in result or "exceptionDetails" in result:
        report.failures.append(f"the page's check script failed: "
                               f"{result.get('error') or result['exceptionDetails']}")
        found = None
    else:
        found = result["result"]["value"]
    if found is not None:
        report.formulas, report.images = found["mjx"], found["images"]
        report.failures += judge(page, found, state["network"], state["console"], origin, html)
    else:
        report.failures += [f"console: {c}" for c in state["console"]]
        report.failures += [f"needs the network: {u}" for u in state["network"]]
    report.failures = list(dict.fromkeys(report.failures))  # each once
    if shots:
        height = min(int((found or {}).get("height") or HEIGHT), MAX_SHOT_HEIGHT)
        shot = chrome.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1}},
            session=session)
        report.screenshot = Path(shots) / (page.replace("/", "__").removesuffix(".html") + ".png")
        report.screenshot.write_bytes(base64.b64decode(shot["data"]))
    report.seconds = time.monotonic() - t0
    return report


def summary(reports: list[PageReport]) -> str:
    lines = []
    for r in reports:
        lines.append(f"{'ok  ' if r.ok else 'FAIL'} {r.page} ({r.seconds:.1f} s, "
                     f"{r.formulas} formulas typeset, {r.images} images)")
        lines += [f"     - {f}" for f in r.failures]
    bad = sum(not r.ok for r in reports)
    lines.append(f"{len(reports) - bad} pages passed, {bad} failed")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html", nargs="?", type=Path, default=HTML)
    ap.add_argument("--shots", type=Path, default=SHOTS, help="screenshots go here")
    ap.add_argument("--page", action="append", help="check only this page (repeatable)")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    try:
        reports = check(args.html, args.shots, args.page,
                        progress=lambda r: print(summary([r]).splitlines()[0], flush=True))
    except Unavailable as e:
        print(f"browser check skipped: {e}", file=sys.stderr)
        return SKIP
    print(summary(reports))
    print(f"screenshots in {args.shots}; {time.monotonic() - t0:.0f} s")
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
