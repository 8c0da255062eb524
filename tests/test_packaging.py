"""The project's own files agree with each other: dependencies, table of contents, baselines."""
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted += extra
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
    files = _toc_files()
    for f in files:
        assert any((ROOT / f"{f}{ext}").exists() for ext in (".md", ".ipynb")), f
    for nb in CHAPTERS:
        assert f"book/{nb.stem}" in files, f"{nb.name} is missing from _toc.yml"


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


@pytest.mark.parametrize("nb", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_shape(nb):
    cells = _cells(nb)
    params = [c for c in cells if "parameters" in _tags(c)]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    src = "".join(params[0]["source"])
    for name in ("profile", "seed", "device"):
        assert re.search(rf"^{name}\s*=", src, re.M), f"parameters cell lacks {name}"
    checked = ["".join(c["source"]) for c in cells if "nbval-check-output" in _tags(c)]
    assert any("claims_table(" in s for s in checked), "claims table must be checked by nbval"
    assert "run.finish()" in "".join(cells[-1]["source"]), "last cell shows the run record"


@pytest.mark.parametrize("nb", CHAPTERS, ids=lambda p: p.stem)
def test_quick_baseline_exists_for_every_chapter(nb):
    base = ROOT / "tests" / "baselines" / nb.name
    assert base.exists(), f"run `make baselines` to create {base.relative_to(ROOT)}"
    record = json.loads(base.read_text())["metadata"].get("bnutils", {})
    assert record.get("profile") == "quick" and record.get("device") == "cpu"
    # the baseline runs the same code cells as the book's notebook
    strip = lambda cells: [c["source"] for c in cells  # noqa: E731
                           if "injected-parameters" not in _tags(c)]
    assert strip(_cells(base)) == strip(_cells(nb)), \
        "baseline is stale: run `make baselines` after editing the chapter"
