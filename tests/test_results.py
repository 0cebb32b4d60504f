"""Result files: written atomically, readable like any other file the user writes."""

import os

import repalign_jax as rj
from repalign_jax.results import atomic_write_json


def test_result_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644  # not the 0600 of a temporary file
    assert not list(tmp_path.glob(".*.tmp"))


def test_version_is_the_installed_distributions():
    from importlib import metadata

    assert rj.__version__ == metadata.version("repalign_jax")
