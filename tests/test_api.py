"""The public API: `__all__` is what `repalign_jax` exports, and every name of it is documented."""

import importlib
import pathlib
import re

import pytest

import repalign_jax as rj

API_MD = pathlib.Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_all_names_exist_and_nothing_private_is_exported():
    assert len(rj.__all__) == len(set(rj.__all__))
    assert all(hasattr(rj, n) for n in rj.__all__)
    assert not [n for n in rj.__all__ if n.startswith("_")]
    # implementation details stay out (issue "One resumable run-grid layer ...": plain_dots, effective_term)
    assert "plain_dots" not in rj.__all__ and not hasattr(rj, "plain_dots")
    assert "effective_term" not in rj.__all__ and not hasattr(rj, "effective_term")  # diffrax.ODETerm(vector_field)


def test_every_exported_name_is_in_the_api_reference():
    entries = set(re.findall(r"^::: repalign_jax\.(\w+)\s*$", API_MD.read_text(), re.M))
    modules = [importlib.import_module(f"repalign_jax.{e}") for e in entries if e not in rj.__all__]
    for name in rj.__all__:
        in_module = any(getattr(m, name, None) is getattr(rj, name) for m in modules)
        assert name in entries or in_module, f"{name} is exported but not in docs/api.md"


def test_activations_are_read_only():
    with pytest.raises(TypeError):
        # the traced activation index is a name's position: fixed (deliberately assigns to the read-only map)
        rj.ACTIVATIONS["mine"] = abs  # pyright: ignore[reportIndexIssue]
    assert tuple(rj.ACTIVATIONS) == rj.ACTIVATION_NAMES
