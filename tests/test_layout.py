"""The package's layers: imports only flow downward, and no chapter imports another."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bnutils"
#: layer -> the layers its modules may import from (besides the standard library and others)
ALLOWED = {
    "infra": {"infra"},
    "core": {"infra", "core"},
    "measure": {"infra", "core", "measure"},
    "chapters": {"infra", "core", "measure"},
}
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent.name in ALLOWED)


def imported(path: Path) -> set[str]:
    """Every ``bnutils`` name a file imports, dotted relative to ``bnutils`` (``from ..infra
    import report`` in a core module gives ``infra.report``)."""
    package = list(path.relative_to(PACKAGE).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".") if node.module else []
            if node.level:
                base = package[:len(package) - node.level + 1] + module
            elif module[:1] == ["bnutils"]:
                base = module[1:]
            else:
                continue
            found |= {".".join(base + [a.name]) for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".", 1)[1] for a in node.names
                      if a.name.startswith("bnutils.")}
    return found


def allowed(layer: str, module: str, name: str) -> bool:
    top = name.split(".")[0]
    if top == "__version__":
        return True
    if layer == "chapters" and top == "chapters":
        return name.split(".")[1] == module  # its own module only
    return top in ALLOWED[layer]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_downward(path):
    layer = path.parent.name
    for name in imported(path):
        assert allowed(layer, path.stem, name), f"{layer}/{path.name} imports bnutils.{name}"


def test_the_checker_sees_a_bad_import():
    assert {"infra.validate", "measure.stats.fit_linear_rate"} <= imported(
        PACKAGE / "chapters" / "gdnp.py")
    assert not allowed("core", "train", "measure.stats.slope_ci")
    assert not allowed("chapters", "gdnp", "chapters.decoupling.OLS")
    assert allowed("chapters", "gdnp", "chapters.gdnp")
    assert not allowed("infra", "report", "cli.main")


def test_every_chapter_notebook_has_a_module_and_vice_versa():
    notebooks = {p.stem[3:] for p in (PACKAGE.parent / "book").glob("[0-9][0-9]_*.ipynb")}
    modules = {p.stem for p in (PACKAGE / "chapters").glob("*.py") if p.stem != "__init__"}
    assert notebooks == modules
