"""Show that the regression suite can fail: drop the dmu term from BN's backward and run it.

    make check-suite-fails

Copies the project to a temporary folder, removes ``+ dmu / m`` from the hand-written backward
pass in ``bnutils/core/bn.py`` ([IS15] Sec. 3: dx = dxhat/sqrt(var+eps) + dvar*2(x-mu)/m + dmu/m),
then runs the BN unit tests and Chapter 1's nbval regression test against the mutant. Exits 0
when the suite goes red, as it must, and 1 when the mutant survives.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TERM = " + dmu / m"


def main() -> int:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "project"
        for f in files:
            if (ROOT / f).is_file():
                (copy / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / f, copy / f)
        bn = copy / "bnutils" / "core" / "bn.py"
        src = bn.read_text()
        if src.count(TERM) != 1:
            print(f"cannot find exactly one {TERM.strip()!r} in bnutils/core/bn.py",
                  file=sys.stderr)
            return 2
        bn.write_text(src.replace(TERM, ""))
        env = dict(os.environ, PYTHONPATH=str(copy), BNUTILS_CACHE=str(Path(tmp) / "cache"),
                   MPLBACKEND="Agg")
        where = subprocess.run([sys.executable, "-c", "import bnutils; print(bnutils.__file__)"],
                               cwd=copy / "tests", env=env, capture_output=True, text=True)
        assert where.stdout.startswith(str(copy)), f"mutant not imported: {where.stdout}"
        baselines = sorted(str(p) for p in (copy / "tests" / "baselines").glob("01_*.ipynb"))
        cmd = [sys.executable, "-m", "pytest", "tests/test_bn.py", *baselines, "--nbval-lax",
               "--nbval-current-env", "-q", "-p", "no:cacheprovider"]
        print("mutant: dx without its dmu/m term; running", " ".join(cmd[3:]), flush=True)
        proc = subprocess.run(cmd, cwd=copy, env=env)
    if proc.returncode == 0:
        print("FAILED CHECK: the suite passed against a wrong backward pass", file=sys.stderr)
        return 1
    print("OK: the suite goes red when the dmu term is dropped from BN's backward pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
