"""The generated pages (bnutils.pages): the claims dashboard lists every claim of every chapter
and its counts equal the chapters' own claims tables; the reproducibility appendix holds every
chapter's run record and the command that reruns it; figures are numbered per chapter."""
import json
import re
from pathlib import Path

import pytest

from bnutils import pages, sphinxext
from bnutils.infra.report import (CLAIMS_HEADER, INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED,
                                  Claim, claims_table)

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))


def claims_rows(nb_path: Path) -> list[list[str]]:
    """The chapter's claims table, read here independently of bnutils.pages: the rows of the
    Markdown output of the checked cell that calls claims(...)."""
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        source = "".join(cell.get("source", ""))
        if "nbval-check-output" in cell.get("metadata", {}).get("tags", []) \
                and "claims(" in source:
            for out in cell.get("outputs", []):
                md = "".join(out.get("data", {}).get("text/markdown", ""))
                lines = [ln for ln in md.splitlines() if ln.startswith("|")]
                if lines and lines[0].startswith("| Claim |"):
                    cells = [re.split(r"(?<!\\)\|", ln.strip().strip("|")) for ln in lines]
                    return [[c.strip() for c in row] for row in cells]
    return []


def dashboard_counts(markdown: str) -> dict[str, list[int]]:
    """Chapter title -> [claims, reproduced, not reproduced, inconclusive] from the dashboard's
    "Counts per chapter" table."""
    section = markdown.split("## Counts per chapter", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in [ln for ln in section.splitlines() if ln.startswith("|")][2:]:
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        title = re.sub(r"^\[(.*)\]\(.*\)$", r"\1", cells[0])
        out[title] = [int(c) for c in cells[2:6]]
    return out


@pytest.fixture(scope="module")
def book_chapters():
    return pages.read_chapters(ROOT / "book")


def test_dashboard_counts_equal_the_chapters_claims_tables(book_chapters):
    md = pages.claims_page(book_chapters)
    counts = dashboard_counts(md)
    total = [0, 0, 0, 0]
    assert len(book_chapters) == len(CHAPTERS)
    for ch, path in zip(book_chapters, CHAPTERS):
        rows = claims_rows(path)
        verdicts = [r[rows[0].index("Verdict")] for r in rows[2:]] if rows else []
        expected = [len(verdicts), verdicts.count(REPRODUCED), verdicts.count(NOT_REPRODUCED),
                    verdicts.count(INCONCLUSIVE)]
        assert counts[ch.title] == expected, path.name
        total = [a + b for a, b in zip(total, expected)]
        for r in rows[2:]:  # every claim is listed, with its source, numbers and verdict
            claim = r[0]
            assert any(line.startswith("| [") and f"| {claim} |" in line
                       for line in md.splitlines()), f"{path.name}: {claim!r} missing"
    assert counts["All chapters"] == total
    assert f"{total[0]} claims" in pages.findings(book_chapters)


def test_every_claim_row_has_profile_and_link(book_chapters):
    md = pages.claims_page(book_chapters)
    for ch in book_chapters:
        for i in range(1, len(ch.claims) + 1):
            row = next(ln for ln in md.splitlines() if ln.startswith(f"| [{ch.number}.{i}]("))
            cells = pages.split_row(row)
            assert f"]({ch.path.name}#" in row and cells[-2] == ch.profile  # then: across seeds


def test_reproducibility_page_has_every_chapters_record_and_command(book_chapters):
    md = pages.reproducibility_page(book_chapters)
    for ch in book_chapters:
        assert f"## {ch.title}" in md
        if ch.record:
            r = ch.record
            assert pages.command(ch) in md
            assert f"--profile {r['profile']}" in pages.command(ch)
            assert r["date"] in md and r["versions"]["torch"] in md
    assert "## The full profile on a GPU" in md and "--device cuda" in md


# ------------------------------------------------------------------ on made-up chapters


def notebook(claims: list[Claim] | None, record: dict | None = None,
             title: str = "Chapter 7: Made up", heading: str = "Claims") -> dict:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": f"# {title}\n\nText."},
             {"cell_type": "markdown", "metadata": {}, "source": f"## {heading}"}]
    if claims is not None:
        table = claims_table(claims)._repr_markdown_()
        cells.append({"cell_type": "code", "metadata": {"tags": ["nbval-check-output"]},
                      "source": "ch.claims(x)", "execution_count": 1, "outputs": [
                          {"output_type": "execute_result", "execution_count": 1, "metadata": {},
                           "data": {"text/markdown": table, "text/plain": table}}]})
    run = "| Run | Value |\n|---|---|\n| profile | smoke |\n| device | cuda:0 (Made-up GPU) |"
    cells.append({"cell_type": "code", "metadata": {}, "source": "run_record(cfg)",
                  "execution_count": 2, "outputs": [] if record is None else [
                      {"output_type": "execute_result", "execution_count": 2, "metadata": {},
                       "data": {"text/markdown": run}}]})
    meta = {} if record is None else {"bnutils": record}
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": meta, "cells": cells}


RECORD = {"chapter": "07", "parameters": {"profile": "smoke", "lr": 0.3, "sizes": [1, 2]},
          "profile": "smoke", "seed": 4, "device": "cuda:0", "lr": 0.3, "sizes": [1, 2],
          "n_seeds": 5, "versions": {"python": "3.11.7", "torch": "9.9"},
          "date": "2030-01-01 00:00 UTC", "wall_time_s": 4000.0}


def test_any_profile_and_a_chapter_not_yet_executed(tmp_path):
    claims = [Claim("A | B holds", "[X] Sec. 1", "yes", "0.5", REPRODUCED, seeds=5),
              Claim("C", "[X] Sec. 2", "yes", "no", NOT_REPRODUCED, seeds=5),
              Claim("D", "[X] Sec. 3", "yes", "?", INCONCLUSIVE)]
    (tmp_path / "07_made_up.ipynb").write_text(json.dumps(notebook(claims, RECORD)))
    later = notebook(None, title="Chapter 8: Later")
    (tmp_path / "08_later.ipynb").write_text(json.dumps(later))
    paths = pages.write_pages(tmp_path)
    claims_md, repro_md, _, findings_md = (p.read_text() for p in paths)
    assert dashboard_counts(claims_md) == {"Chapter 7: Made up": [3, 1, 1, 1],
                                           "Chapter 8: Later": [0, 0, 0, 0],
                                           "All chapters": [3, 1, 1, 1]}
    assert "| [7.1](07_made_up.ipynb#claims) | A \\| B holds | [X] Sec. 1 | yes | 0.5 | 5 | " \
           "reproduced | smoke |" in claims_md
    assert "not executed" in claims_md and "Chapter 8: Later" in repro_md
    assert "cuda:0 (Made-up GPU)" in repro_md and "1 h 06 min" in repro_md
    assert "python -m bnutils run 07 --profile smoke --seed 4 --device cuda -p lr=0.3 " \
           "-p 'sizes=[1, 2]'" in repro_md
    assert "4; n_seeds = 5; claims rest on 5 seeds each" in repro_md
    assert "3 claims: 1 reproduced, 1 not reproduced, 1 inconclusive" in findings_md
    assert list(CLAIMS_HEADER)[:4] == ["Claim", "Source", "Paper reports", "This run measured"]


def test_an_older_table_without_seeds_and_another_heading(tmp_path):
    nb = notebook([Claim("E", "[Y]", "p", "m", REPRODUCED)], RECORD, heading="Summary")
    md = nb["cells"][2]["outputs"][0]["data"]["text/markdown"]
    older = md.replace(" Seeds |", "").replace("---|---|---|---|---|---|", "---|---|---|---|---|")
    older = older.replace(" - | reproduced |", " reproduced |")
    nb["cells"][2]["outputs"][0]["data"]["text/markdown"] = older
    path = tmp_path / "07_made_up.ipynb"
    path.write_text(json.dumps(nb))
    ch = pages.read_chapter(path)
    assert ch.counts()[REPRODUCED] == 1 and ch.claims_link == "07_made_up.ipynb#summary"
    assert "| [7.1](07_made_up.ipynb#summary) | E | [Y] | p | m | - | reproduced |" \
        in pages.claims_page([ch])


def test_an_unknown_verdict_is_refused(tmp_path):
    path = tmp_path / "07_made_up.ipynb"
    path.write_text(json.dumps(notebook([Claim("F", "[Z]", "p", "m", "probably")], RECORD)))
    with pytest.raises(ValueError, match="unknown verdict 'probably'"):
        pages.claims_page([pages.read_chapter(path)])


def test_split_row_keeps_escaped_pipes():
    assert pages.split_row("| a | max \\|x\\| | c |") == ["a", "max \\|x\\|", "c"]
    assert pages.slug("Repeating the MNIST experiment (Fig. 1)") == \
        "repeating-the-mnist-experiment-fig-1"


# ------------------------------------------------------------------ figure numbers


def test_figures_are_numbered_per_chapter_from_the_file_name():
    numbers = {"book/intro": {"figure": {"a": (1,)}},
               "book/02_ics": {"figure": {"x": (4,), "w": (3,)}, "displaymath": {"e": (7,)}},
               "book/05_gdnp": {"figure": {"y": (5,)}}}
    changed = sphinxext.renumber(numbers)
    assert numbers == {"book/intro": {"figure": {"a": (1,)}},
                       "book/02_ics": {"figure": {"w": (2, 1), "x": (2, 2)},
                                       "displaymath": {"e": (2, 1)}},
                       "book/05_gdnp": {"figure": {"y": (5, 1)}}}
    assert changed == ["book/02_ics", "book/05_gdnp"] and sphinxext.renumber(numbers) == []
    assert sphinxext.chapter_number("book/03_smoothness") == 3


def test_an_inline_script_reaches_a_page_once():
    from sphinx.builders.html._assets import _JavaScript

    body = {"body": "const THEBE_JS_URL = 1"}
    scripts = [_JavaScript(None, **body), _JavaScript("", **body), _JavaScript("a.js")]
    assert [s.filename for s in sphinxext.dedupe_scripts(scripts)] == [None, "a.js"]


def test_seed_record_and_robustness(tmp_path, book_chapters):
    ch = next(c for c in book_chapters if c.claims)
    path = tmp_path / "seeds.json"
    for seed in (0, 1):
        pages.record_seeds(ch, "quick", seed, path)
    record = pages.load_seeds(path)
    first = ch.claims[0]["Claim"]
    assert pages.robustness(record, ch.key, first) == "stable (quick: 2 seeds)"
    # a verdict that flips at another seed is marked
    other = {v for v in (REPRODUCED, NOT_REPRODUCED)
             if v != record["quick"][ch.key]["0"][first]}.pop()
    record["quick"][ch.key]["2"] = {**record["quick"][ch.key]["0"], first: other}
    assert pages.robustness(record, ch.key, first) == \
        f"**{pages.CHANGES}** (quick: 3 seeds)"
    page = pages.seeds_page(book_chapters, record)
    assert "quick, seed 2" in page and f"| {first} |" in page
    assert "1 change with the seed" in page
    dashboard = pages.claims_page(book_chapters, record)
    assert pages.CHANGES in dashboard
    assert pages.seeds_page(book_chapters, {}).endswith("No seeds have been recorded yet.\n")
