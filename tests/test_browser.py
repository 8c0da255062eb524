"""The built book in a real browser: every page of _build/html in headless Chromium with the
network off (tests/browser_check.py), and planted defects that must turn that check red
(tests/check_browser_fails.py).

`make test` builds the book first. Without Chromium or without a built book these tests are
skipped, and say why; with ``BNUTILS_REQUIRE_BROWSER=1`` (set by .ci/run) they fail instead.
"""
import os

import browser_check
import check_browser_fails
import pytest

REQUIRED = os.environ.get("BNUTILS_REQUIRE_BROWSER") == "1"


def unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"browser test cannot run: {reason} (BNUTILS_REQUIRE_BROWSER=1, as in CI)")
    pytest.skip(f"browser test skipped: {reason}")


def test_every_page_in_headless_chromium_offline():
    try:
        reports = browser_check.check()
    except browser_check.Unavailable as e:
        unavailable(str(e))
    text = browser_check.summary(reports)
    print(text)
    print(f"screenshots in {browser_check.SHOTS}")
    assert reports and all(r.ok for r in reports), text
    assert any(r.formulas > 0 for r in reports), "no page typeset any math"


def test_planted_defects_turn_the_browser_check_red(capsys):
    code = check_browser_fails.main()
    out = capsys.readouterr()
    if code == browser_check.SKIP:
        unavailable(out.err.strip().removeprefix("browser check skipped: "))
    print(out.out)
    assert code == 0, out.out + out.err
