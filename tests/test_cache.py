import pytest

from bnutils.infra import cache


def test_cached_computes_once_per_parameters():
    calls = []

    def compute():
        calls.append(1)
        return {"x": len(calls)}

    assert cache.cached("f", {"a": 1}, compute) == {"x": 1}
    assert cache.cached("f", {"a": 1}, compute) == {"x": 1}
    assert cache.cached("f", {"a": 2}, compute) == {"x": 2}
    assert len(calls) == 2


def test_key_depends_on_name_params_and_code(monkeypatch):
    assert cache.cache_key("f", {"a": 1}) != cache.cache_key("g", {"a": 1})
    assert cache.cache_key("f", {"a": 1}) != cache.cache_key("f", {"a": 1.5})
    assert cache.cache_key("f", {"a": 1, "b": 2}) == cache.cache_key("f", {"b": 2, "a": 1})
    code = ("bnutils.core.train",)
    before = cache.cache_key("f", {"a": 1}, code)
    assert before != cache.cache_key("f", {"a": 1})
    monkeypatch.setattr(cache, "code_version", lambda *modules: "edited-code")
    assert cache.cache_key("f", {"a": 1}, code) != before


def test_dependencies_follow_imports_but_skip_presentation():
    deps = cache.dependencies("bnutils.core.train")
    assert {"bnutils.core.train", "bnutils.core.data", "bnutils.core.probes",
            "bnutils.core.models", "bnutils.infra.cache"} <= set(deps)  # also through probes
    assert "bnutils.core.models" not in cache.dependencies("bnutils.core.data")
    chapter = cache.dependencies("bnutils.chapters.gdnp")
    assert "bnutils.measure.stats" in chapter
    assert not set(chapter) & cache.PRESENTATION  # figures and tables never enter a key
    assert not any(d.startswith("bnutils.chapters.") and d != "bnutils.chapters.gdnp"
                   for d in chapter)


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A throw-away package ``bnfake`` (a: code imported by b; p: presentation) to edit."""
    root = tmp_path / "src" / "bnfake"
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "a.py").write_text('"""Doc."""\nX = 1  # comment\n')
    (root / "b.py").write_text("from . import a\nfrom .p import show\n\n\ndef f():\n"
                               "    return a.X\n")
    (root / "p.py").write_text("def show():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.setattr(cache, "PACKAGE", "bnfake")
    monkeypatch.setattr(cache, "PRESENTATION", frozenset({"bnfake.p"}))

    def version():
        cache.dependencies.cache_clear()
        cache.code_version.cache_clear()
        return cache.code_version("bnfake.b")

    yield root, version
    cache.dependencies.cache_clear()
    cache.code_version.cache_clear()


def test_code_version_ignores_docstrings_comments_and_presentation(package):
    root, version = package
    v0 = version()
    (root / "a.py").write_text('"""Another docstring."""\n\nX = 1  # another comment\n')
    (root / "p.py").write_text("def show():\n    return 'a new figure'\n")
    assert version() == v0 and len(v0) == 12
    (root / "a.py").write_text("X = 2\n")  # a dependency's code changed
    assert version() != v0


def test_cached_driver_keys_on_every_argument_and_its_code(monkeypatch):
    calls = []

    @cache.cached_driver
    def driver(a, b=2, *, progress=True):
        calls.append((a, b))
        return a + b

    assert driver(1) == driver(1, b=2) == driver(a=1) == 3  # defaults are part of the key
    assert driver(1, 3) == 4 and len(calls) == 2
    assert driver.__wrapped__(5) == 7 and len(calls) == 3
    monkeypatch.setattr(cache, "code_version", lambda *modules: "edited-code")
    driver(1)
    assert len(calls) == 4


def test_corrupted_entry_is_recomputed(tmp_cache):
    cache.cached("f", {"a": 1}, lambda: [1, 2, 3])
    (entry,) = tmp_cache.glob("f-*.pt")
    entry.write_bytes(entry.read_bytes()[:10])  # truncate
    assert cache.cached("f", {"a": 1}, lambda: [4]) == [4]


def test_failed_compute_leaves_nothing(tmp_cache):
    def boom():
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.cached("f", {}, boom)
    assert list(tmp_cache.iterdir()) == []


def test_refresh_recomputes(monkeypatch):
    cache.cached("f", {}, lambda: 1)
    assert cache.cached("f", {}, lambda: 2, refresh=True) == 2
    assert cache.cached("f", {}, lambda: 3) == 2
    monkeypatch.setenv("BNUTILS_REFRESH", "1")
    assert cache.cached("f", {}, lambda: 4) == 4
