"""Show that the browser check can fail: plant defects into a copy of the book and check it.

    make check-browser-fails          (also run by tests/test_browser.py)

Copies the project to a temporary folder and plants, each once:

- in Chapter 1: an image whose file does not exist, an undefined glue key, a numref to a figure
  that does not exist, a citation of an unknown key, a link to a page that does not exist, and a
  warning printed to stdout in a cell's output;
- in the introduction: a script that logs a console error;
- in ``_config.yml``: MathJax from its CDN instead of the built site (Jupyter Book's default),
  which a machine without network cannot load.

It builds the copy without ``--warningiserror`` (with it, Sphinx already refuses the unknown glue
key, numref and citation), runs ``tests/browser_check.py`` on the planted pages, and exits 0 only
if every planted defect is reported, 1 if one is missed, 77 when the check cannot run here.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import browser_check  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = "book/01_bn_transform.ipynb"
PLANTED_MARKDOWN = """### Planted defects

![a planted image whose file does not exist](no_such_image.png)

An undefined glue key: {glue:text}`ch01_no_such_key`. A reference to a figure that does not
exist: {numref}`fig-no-such-figure`. A citation of an unknown key {cite}`no_such_paper_2099`.
A link to a page that does not exist: <a href="no_such_page.html">nowhere</a>.
"""
CONSOLE_ERROR = '\n<script>console.error("planted console error")</script>\n'
WARNING_OUTPUT = "/tmp/x.py:1: UserWarning: planted warning printed to stdout\n"
#: defect -> (page, text that its report must contain)
EXPECTED = {
    "broken image": ("book/01_bn_transform.html", "image did not load"),
    "undefined glue key": ("book/01_bn_transform.html", "ch01_no_such_key"),
    "unresolved numref": ("book/01_bn_transform.html", "fig-no-such-figure"),
    "unresolved citation": ("book/01_bn_transform.html", "unresolved citation"),
    "broken internal link": ("book/01_bn_transform.html", "no_such_page.html"),
    "warning in an output": ("book/01_bn_transform.html", "planted warning"),
    "console error": ("book/intro.html", "planted console error"),
    "math from a CDN, offline": ("book/01_bn_transform.html", "math not typeset"),
    "request to the network": ("book/01_bn_transform.html", "needs the network"),
}


def copy_project(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for f in files:
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)


def plant(copy: Path) -> None:
    path = copy / CHAPTER
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    cells.insert(1, {"cell_type": "markdown", "id": "planted0", "metadata": {},
                     "source": PLANTED_MARKDOWN})
    shown = next(c for c in cells if c["cell_type"] == "code" and c.get("outputs")
                 and "hide-input" not in c["metadata"].get("tags", []))
    shown["outputs"].insert(0, {"output_type": "stream", "name": "stdout",
                                "text": WARNING_OUTPUT})
    path.write_text(json.dumps(nb))
    intro = copy / "book" / "intro.md"
    intro.write_text(intro.read_text() + CONSOLE_ERROR)
    config = copy / "_config.yml"
    lines = config.read_text().splitlines(keepends=True)
    kept = [ln for ln in lines if "sphinx-mathjax-offline" not in ln]
    assert len(kept) == len(lines) - 1, "_config.yml does not list sphinx-mathjax-offline once"
    config.write_text("".join(kept))


def build(copy: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(copy), MPLBACKEND="Agg")
    bindir = Path(sys.executable).parent
    subprocess.run([sys.executable, "-m", "bnutils", "pages"], cwd=copy, env=env, check=True,
                   capture_output=True)
    proc = subprocess.run([str(bindir / "jupyter-book"), "build", ".", "--builder", "html"],
                          cwd=copy, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not (copy / "_build" / "html" / "index.html").exists():
        sys.stdout.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise RuntimeError("the planted copy did not build")


def main() -> int:
    t0 = time.monotonic()
    try:
        binary = browser_check.find_chromium()
    except browser_check.Unavailable as e:
        print(f"browser check skipped: {e}", file=sys.stderr)
        return browser_check.SKIP
    with tempfile.TemporaryDirectory(prefix="bnutils-planted-") as tmp:
        copy = Path(tmp) / "project"
        copy_project(copy)
        plant(copy)
        build(copy)
        pages = sorted({page for page, _ in EXPECTED.values()})
        reports = browser_check.check(copy / "_build" / "html", None, pages, binary)
    print(browser_check.summary(reports))
    by_page = {r.page: "\n".join(r.failures) for r in reports}
    missed = [name for name, (page, text) in EXPECTED.items() if text not in by_page.get(page, "")]
    for name, (page, text) in EXPECTED.items():
        print(f"{'caught' if name not in missed else 'MISSED'}: {name} ({page})")
    print(f"{time.monotonic() - t0:.0f} s")
    if missed:
        print(f"FAILED CHECK: the browser check missed {', '.join(missed)}", file=sys.stderr)
        return 1
    print("OK: the browser check goes red on every planted defect")
    return 0


if __name__ == "__main__":
    sys.exit(main())
