import json
import subprocess
import sys

import pytest

from bnutils import cli


def test_parse_values():
    assert cli.parse_parameters(["seed=3", "lr=0.1", "sizes=[1, 2]", "dataset=digits",
                                 "steps=None"]) == {
        "seed": 3, "lr": 0.1, "sizes": [1, 2], "dataset": "digits", "steps": None}
    with pytest.raises(SystemExit, match="name=value"):
        cli.parse_parameters(["seed"])


def test_every_chapter_notebook_has_its_module():
    for key, path in cli.chapters().items():
        module = cli.chapter_module(path)
        assert module.PROFILES.chapter == key, path.name


@pytest.mark.parametrize("args, message", [
    (["run", "01", "-p", "lr=-1"], "lr must be a positive number"),
    (["run", "01", "-p", "dataset=imagenet"], "allowed: auto, mnist, digits"),
    (["run", "42"], "unknown chapter"),
])
def test_bad_parameters_fail_before_any_work(args, message, tmp_path):
    out = tmp_path / "out.ipynb"
    proc = subprocess.run([sys.executable, "-m", "bnutils", *args, "--output", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not out.exists()


def test_unknown_profile_is_refused_by_the_parser():
    proc = subprocess.run([sys.executable, "-m", "bnutils", "run", "01", "--profile", "fast"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "invalid choice: 'fast'" in proc.stderr


def test_lighten_keeps_code_and_compared_outputs_only(tmp_path):
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "prose", "id": "a"},
        {"cell_type": "code", "metadata": {}, "source": "plot()", "id": "b",
         "execution_count": 1, "outputs": [{"output_type": "stream", "name": "stdout",
                                            "text": "figure"}]},
        {"cell_type": "code", "metadata": {"tags": ["nbval-check-output"]}, "source": "claims()",
         "id": "c", "execution_count": 2,
         "outputs": [{"output_type": "stream", "name": "stdout", "text": "table"}]}]}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    cli.lighten(path)
    cells = json.loads(path.read_text())["cells"]
    assert ["".join(c["source"]) for c in cells] == ["plot()", "claims()"]
    assert cells[0]["outputs"] == [] and "".join(cells[1]["outputs"][0]["text"]) == "table"


FAKE_RUN = """
import sys, types
from pathlib import Path
from bnutils import cli
from bnutils.infra.config import ChapterProfiles
cli.BOOK = Path(sys.argv[1])
fake = types.SimpleNamespace(PROFILES=ChapterProfiles("99", "Fake", quick={"n": 1}, full={"n": 2}))
cli.chapter_module = lambda notebook: fake
sys.exit(cli.main(["run", "99", "--profile", "quick", "--output", sys.argv[2]]))
"""


def test_run_prints_only_its_progress_bar_and_result_line(tmp_path):
    """No papermill warning about the temporary file's name, no kernel warning about TCP without
    encryption, no nbformat warning about cells without ids (this notebook has none)."""
    book = tmp_path / "book"
    book.mkdir()
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}}, "cells": [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None,
         "outputs": [], "source": 'profile = "auto"\nseed = 0\ndevice = "auto"\nn = None'},
        {"cell_type": "markdown", "metadata": {}, "source": "prose"},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
         "source": "print(n)"}]}
    (book / "99_fake.ipynb").write_text(json.dumps(nb))
    out = tmp_path / "out" / "99_fake.ipynb"
    out.parent.mkdir()
    proc = subprocess.run([sys.executable, "-c", FAKE_RUN, str(book), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    lines = [ln.strip() for ln in proc.stderr.replace("\r", "\n").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("Executing:")]  # the progress bar
    assert len(lines) == 1 and lines[0].startswith(f"wrote {out} (profile quick"), lines
    assert sorted(p.name for p in out.parent.iterdir()) == ["99_fake.ipynb"]  # no temporary file
    written = json.loads(out.read_text())
    assert all(c.get("id") for c in written["cells"])
    assert written["metadata"]["bnutils"]["profile"] == "quick"
    assert written["metadata"]["papermill"]["input_path"] == "99_fake.ipynb"


def test_pages_command_writes_the_generated_pages(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bnutils", "pages", "--book", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "_findings.md", "claims.md", "reproducibility.md", "seeds.md"]


def test_seeds_reads_the_published_chapter_when_it_ran_at_that_profile_and_seed(tmp_path,
                                                                                 monkeypatch):
    import shutil

    published = cli.BOOK / "04_decoupling.ipynb"
    record = json.loads(published.read_text())["metadata"]["bnutils"]
    shutil.copy(published, tmp_path / published.name)
    class Executed(Exception):
        pass

    def run_chapter(key, params, out):
        executed.append(params)
        raise Executed

    executed = []
    monkeypatch.setattr(cli, "BOOK", tmp_path)
    monkeypatch.setattr(cli, "run_chapter", run_chapter)
    cli.record_all_seeds(["04"], record["profile"], [record["seed"]], redo=False)
    assert executed == []
    seeds = json.loads((tmp_path / "seeds.json").read_text())
    assert seeds[record["profile"]]["04"][str(record["seed"])]
    with pytest.raises(Executed):  # another seed is executed
        cli.record_all_seeds(["04"], record["profile"], [record["seed"] + 1], redo=False)
    assert executed == [{"profile": record["profile"], "seed": record["seed"] + 1}]
