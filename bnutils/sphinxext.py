"""Sphinx extension of the book: figures, tables and equations numbered per chapter, and each
inline script once per page.

A chapter is the notebook ``book/NN_<name>.ipynb``; its figures are numbered "Fig. N.1",
"Fig. N.2", ... with ``N`` the number in its file name, so that a figure keeps its number when a
chapter is added before it (the book's plan has a Chapter 3 that comes later) and the numbers
agree with the chapter titles. Other pages (introduction, appendices) keep Sphinx's numbers.

Listed in ``_config.yml`` under ``sphinx: extra_extensions``.
"""
from __future__ import annotations

import re
from typing import Any

CHAPTER = re.compile(r"(?:^|/)(\d\d)_[^/]+$")


def chapter_number(docname: str) -> int | None:
    """``book/02_ics`` -> 2; None for a page that is not a chapter."""
    m = CHAPTER.search(docname)
    return int(m.group(1)) if m else None


def renumber(fignumbers: dict[str, dict[str, dict[str, tuple[int, ...]]]]) -> list[str]:
    """Rewrite Sphinx's numbers (``env.toc_fignumbers``: docname -> figure type -> id ->
    number) of every chapter to ``(N, k)``, k counting each type from 1 in the order of the page.
    Returns the documents whose numbers changed."""
    changed = []
    for docname, types in fignumbers.items():
        chapter = chapter_number(docname)
        if chapter is None:
            continue
        for figtype, ids in types.items():
            ordered = sorted(ids, key=lambda i: ids[i])
            new = {i: (chapter, k) for k, i in enumerate(ordered, 1)}
            if new != ids:
                types[figtype] = new
                changed.append(docname)
    return sorted(set(changed))


def _on_env_get_updated(app: Any, env: Any) -> list[str]:
    return renumber(env.toc_fignumbers)


def dedupe_scripts(scripts: list[Any]) -> list[Any]:
    """``scripts`` without repeats of an inline script (same body, filename None or '')."""
    seen, out = set(), []
    for js in scripts:
        key = (js.filename or "", js.priority, tuple(sorted(js.attributes.items())))
        if key not in seen:
            seen.add(key)
            out.append(js)
    return out


def _on_html_page_context(app: Any, pagename: str, templatename: str, ctx: dict,
                          doctree: Any) -> None:
    # sphinx-thebe's inline configuration reaches the page twice under Jupyter Book 1 (once from
    # the registry with filename None, once from the builder with ''), and the second
    # `const THEBE_JS_URL` is a SyntaxError in the console of every page.
    if isinstance(ctx.get("script_files"), list):
        ctx["script_files"][:] = dedupe_scripts(ctx["script_files"])


def setup(app: Any) -> dict[str, Any]:
    # after Sphinx's own TocTreeCollector, which assigns the numbers in the same event
    app.connect("env-get-updated", _on_env_get_updated, priority=900)
    app.connect("html-page-context", _on_html_page_context, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

