"""The paper's experiments (`python -m repalign_jax.reproduce`): one module each, `run(ctx) -> dict`."""
