"""A skip in CI is a failure (issue 27): a test that cannot run there hides what it guards.

``tests/conftest.py`` imports :func:`pytest_runtest_makereport` from here, which pytest then
registers as a hook. With ``CI`` set (``.ci/run`` exports ``CI=1``) a skipped test, whether by
``pytest.skip``, a ``skip``/``skipif`` mark or a skipping fixture, is reported as failed, with the
skip's reason. Expected failures (``xfail``) are left alone. tests/test_ci_skips.py shows it.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and in_ci() and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        reason = reason.removeprefix("Skipped: ")
        rep.outcome = "failed"
        rep.longrepr = (f"skipped in CI, where every test must run (CI={os.environ.get('CI')}): {reason}\n"
                        "Fix: provide what the test needs (see README, Tests), or remove the skip")
