"""Which transform core runs, how an operator sees it, and what a failing core does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from transform_helpers import NOBODY

from keys.native import PURE_ENV, core_description, native_module
from proxy.transform import UnsafeBody
from proxy.transform.native_json import NativeJson


def _describe(env: dict[str, str]) -> str:
    code = "from keys.native import core_description; print(core_description())"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


class TestCoreSelection:
    def test_the_description_names_the_core_that_runs(self):
        """The startup/check-config text says compiled exactly when the module is loaded."""
        assert core_description().startswith("compiled") == (native_module() is not None)

    def test_ci_runs_the_compiled_core_when_it_asks_for_it(self):
        """With PHI_TEST_REQUIRE_NATIVE=1 (CI) a missing compiled core fails the run."""
        required = os.environ.get("PHI_TEST_REQUIRE_NATIVE") == "1"
        pure = os.environ.get(PURE_ENV) == "1"
        assert not required or pure or native_module() is not None, core_description()

    def test_pure_switch_forces_the_python_core(self):
        """PHI_PROXY_PURE=1 runs the pure-Python core and says why."""
        assert _describe({PURE_ENV: "1"}) == f"pure-Python core ({PURE_ENV}=1)"


class _Panicking:
    """Stands in for the compiled module when it panics (pyo3 raises a BaseException)."""

    class PanicException(BaseException):
        pass

    def transform_json(self, *_args, **_kwargs):
        raise self.PanicException("index out of bounds")


class TestCoreFailure:
    def test_a_panic_in_the_core_withholds_the_body(self, make_ctx, keyring):
        """A panic becomes UnsafeBody("core_failure") (a clean 502), never a crashed worker."""
        if keyring.native_keys is None:
            pytest.skip(f"needs the compiled core's key table; this runs the {core_description()}")
        native = NativeJson.__new__(NativeJson)
        native._module = _Panicking()
        native._core = None
        with pytest.raises(UnsafeBody, match="core_failure"):
            native.transform(b'{"ssn": "x"}', make_ctx(NOBODY))
