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


def test_every_chapter_has_a_profile_entry():
    from bnutils.profiles import CHAPTERS
    assert set(cli.chapters()) <= set(CHAPTERS)


@pytest.mark.parametrize("args, message", [
    (["run", "01", "-p", "lr=-1"], "lr must be positive"),
    (["run", "01", "-p", "dataset=imagenet"], "allowed: auto, mnist, digits"),
    (["run", "42"], "unknown chapter"),
])
def test_bad_parameters_fail_before_any_work(args, message, tmp_path):
    out = tmp_path / "out.ipynb"
    proc = subprocess.run([sys.executable, "-m", "bnutils", *args, "--output", str(out)]
                          if args[0] == "run" else [sys.executable, "-m", "bnutils", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not out.exists()


def test_unknown_profile_is_refused_by_the_parser():
    proc = subprocess.run([sys.executable, "-m", "bnutils", "run", "01", "--profile", "fast"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "invalid choice: 'fast'" in proc.stderr
