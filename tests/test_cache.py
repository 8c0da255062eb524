import pytest

from bnutils import cache


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BNUTILS_CACHE", str(tmp_path))
    monkeypatch.delenv("BNUTILS_REFRESH", raising=False)
    return tmp_path


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
    before = cache.cache_key("f", {"a": 1})
    monkeypatch.setattr(cache, "code_version", lambda: "edited-code")
    assert cache.cache_key("f", {"a": 1}) != before


def test_code_version_hashes_the_package_source(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(cache, "__file__", str(pkg / "cache.py"))
    cache.code_version.cache_clear()
    v1 = cache.code_version()
    (pkg / "a.py").write_text("x = 2\n")
    cache.code_version.cache_clear()
    try:
        assert cache.code_version() != v1 and len(v1) == 12
    finally:
        monkeypatch.undo()
        cache.code_version.cache_clear()


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


def test_refresh_recomputes():
    cache.cached("f", {}, lambda: 1)
    assert cache.cached("f", {}, lambda: 2, refresh=True) == 2
    assert cache.cached("f", {}, lambda: 3) == 2
