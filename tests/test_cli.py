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
