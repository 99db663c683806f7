"""tests/ci_skips.py: with CI set, a skip (call, mark or fixture) fails the run; without, it stays
a skip. Runs a small pytest session of its own (a subprocess), not this suite."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import TESTS

CASES = '''
import pytest

@pytest.fixture
def needs_data():
    pytest.skip("no data here")

def test_call():
    pytest.skip("not today")

@pytest.mark.skipif(True, reason="a mark")
def test_mark():
    pass

def test_fixture(needs_data):
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_xfail():
    assert False

def test_passes():
    pass
'''


@pytest.mark.parametrize("ci", ["1", ""])
def test_skips_fail_in_ci_only(tmp_path, ci):
    (tmp_path / "conftest.py").write_text(f"import sys\nsys.path.insert(0, {str(TESTS)!r})\n"
                                          "from ci_skips import pytest_runtest_makereport  # noqa: F401\n")
    (tmp_path / "test_cases.py").write_text(CASES)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["CI"] = ci
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    tail = out.stdout.strip().splitlines()[-1]
    if ci:
        assert out.returncode == 1, out.stdout[-3000:]
        assert "1 failed, 1 passed, 1 xfailed, 2 errors" in tail, out.stdout[-3000:]
        assert out.stdout.count("skipped in CI") >= 3 and "no data here" in out.stdout and "a mark" in out.stdout
    else:
        assert out.returncode == 0, out.stdout[-3000:]
        assert "1 passed, 3 skipped, 1 xfailed" in tail, out.stdout[-3000:]


def test_the_suites_conftest_registers_it(tmp_path):
    """tests/conftest.py (loaded here as a plugin) carries the hook: a skip with CI set fails."""
    (tmp_path / "test_one.py").write_text("import pytest\n\ndef test_s():\n    pytest.skip('because')\n")
    env = {**os.environ, "CI": "1", "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
                          str(tmp_path / "test_one.py")], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env=env)
    assert out.returncode == 1 and "skipped in CI" in out.stdout and "because" in out.stdout, out.stdout[-3000:]
