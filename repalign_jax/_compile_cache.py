"""JAX's persistent compilation cache for the command-line tools.

`enable_compile_cache()` points JAX at a folder under the user's cache directory
(`$REPALIGN_JAX_CACHE`, else `$XDG_CACHE_HOME/repalign_jax/jax`, else
`~/.cache/repalign_jax/jax`) and caches every executable, however quick its
compilation: a second invocation of a tool with the same network shapes loads
its executables from disk and compiles nothing. The training engine compiles no
host callback into its executables (progress is reported between compiled
segments), which JAX would otherwise refuse to cache.
"""

from __future__ import annotations

import os
import pathlib

import jax


def default_cache_dir() -> pathlib.Path:
    """`$REPALIGN_JAX_CACHE`, else `$XDG_CACHE_HOME/repalign_jax/jax`, else `~/.cache/repalign_jax/jax`."""
    if os.environ.get("REPALIGN_JAX_CACHE"):
        return pathlib.Path(os.environ["REPALIGN_JAX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "repalign_jax" / "jax"


def enable_compile_cache(path: str | os.PathLike | None = None) -> pathlib.Path | None:
    """Turn on JAX's persistent compilation cache in `path` (default `default_cache_dir()`).

    Returns the folder, or `None` when it cannot be created (the tools then run
    without a cache; nothing else changes). A folder already set by the user
    (`JAX_COMPILATION_CACHE_DIR`, `jax.config`) is kept.
    """
    current = getattr(jax.config, "jax_compilation_cache_dir", None)
    folder = pathlib.Path(current) if current else pathlib.Path(path) if path is not None else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
