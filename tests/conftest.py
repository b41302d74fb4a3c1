"""Test session set-up: pybpf's state directory is a private temporary one for every test."""

from __future__ import annotations

import os
import tempfile

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_state_directory():
    """Pins, maps and JIT caches of the tests never touch the user's state directory."""
    previous = os.environ.get("PYBPF_STATE")
    with tempfile.TemporaryDirectory(prefix="pybpf-test-state-") as directory:
        os.environ["PYBPF_STATE"] = directory
        try:
            yield directory
        finally:
            if previous is None:
                os.environ.pop("PYBPF_STATE", None)
            else:
                os.environ["PYBPF_STATE"] = previous
