"""The project's own files agree with each other: dependencies, table of contents, chapters and
their modules, baselines."""
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from bnutils import cli

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
MAX_CODE_LINES = 12


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted += [r for r in extra if _name(r) != project["name"]]  # not bnutils[run] itself
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    norm = lambda reqs: {_name(r): r.replace(" ", "") for r in reqs}  # noqa: E731
    assert norm(pip) == norm(wanted), "environment.yml and pyproject.toml list different deps"


def _toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    return files


def test_every_toc_entry_exists_and_every_chapter_is_listed():
    from bnutils.pages import GENERATED_PAGES

    files = _toc_files()
    generated = {f"book/{Path(name).stem}" for name in GENERATED_PAGES}  # made by make book
    for f in files:
        assert f in generated or any((ROOT / f"{f}{ext}").exists()
                                     for ext in (".md", ".ipynb")), f
    for nb in CHAPTERS:
        assert f"book/{nb.stem}" in files, f"{nb.name} is missing from _toc.yml"


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def _code(cells):
    return [c["source"] for c in cells
            if c["cell_type"] == "code" and "injected-parameters" not in _tags(c)]


@pytest.mark.parametrize("nb", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_shape(nb):
    cells = _cells(nb)
    params = [c for c in cells if "parameters" in _tags(c)]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    names = re.findall(r"^(\w+)\s*=", "".join(params[0]["source"]), re.M)
    knobs = cli.chapter_module(nb).PROFILES.knobs
    assert names[:3] == ["profile", "seed", "device"] and sorted(names[3:]) == sorted(knobs), \
        "the parameters cell lists profile, seed, device and exactly the chapter's knobs"
    checked = ["".join(c["source"]) for c in cells if "nbval-check-output" in _tags(c)]
    assert any("claims(" in s for s in checked), "claims table must be checked by nbval"
    assert "".join(cells[-1]["source"]).startswith("run_record(cfg"), \
        "last cell shows the run record"
    setup = next(c for c in cells if "setup(globals())" in "".join(c["source"]))
    assert "hide-input" in _tags(setup), "the setup cell is hidden in the rendered page"
    for c in cells:
        if c["cell_type"] == "code" and not {"parameters", "injected-parameters"} & set(_tags(c)):
            lines = "".join(c["source"]).splitlines()
            assert len(lines) <= MAX_CODE_LINES, f"a code cell of {len(lines)} lines: {lines[0]}"


@pytest.mark.parametrize("nb", CHAPTERS, ids=lambda p: p.stem)
def test_stored_chapter_has_no_progress_or_warning_output(nb):
    for c in _cells(nb):
        for o in c.get("outputs", []):
            assert not (o["output_type"] == "stream" and o["name"] == "stderr"), \
                "stderr output (progress bars, warnings) in a stored chapter"


@pytest.mark.parametrize("nb", CHAPTERS, ids=lambda p: p.stem)
def test_quick_baseline_exists_for_every_chapter(nb):
    base = ROOT / "tests" / "baselines" / nb.name
    assert base.exists(), f"run `make baselines` to create {base.relative_to(ROOT)}"
    record = json.loads(base.read_text())["metadata"].get("bnutils", {})
    assert record.get("profile") == "quick" and record.get("device") == "cpu"
    cells = _cells(base)
    # the baseline runs the same code as the book's notebook; prose does not matter
    assert _code(cells) == _code(_cells(nb)), \
        "baseline is stale: run `make baselines` after editing the chapter's code"
    # and keeps only what nbval compares
    assert all(c["cell_type"] == "code" for c in cells)
    assert all(not c.get("outputs") for c in cells if "nbval-check-output" not in _tags(c))
