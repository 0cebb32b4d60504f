"""Results on disk (application layer, public): atomic writes, NumPy archives, summary tables.

Resumable studies are `repalign_jax.RunStore` (`_rungrid.py`), built on these writes.

Nothing here computes: it only moves finished arrays and rows to files and back.
Every file is written to a temporary name in the same folder and renamed into
place, so an interrupted process leaves either the old file or the new one,
never half of one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pathlib
import tempfile
from collections.abc import Mapping, Sequence

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def mean_or_nan(values, where=None) -> float:
    """The mean of `values` (of those where `where` is true), as a float; NaN when there are none.

    The tables' summary statistic: an empty selection (every run diverged, every fit
    failed) reads NaN, never a warning or an error.
    """
    v = np.asarray(values, np.float64)
    if where is not None:
        v = v[np.asarray(where, bool)]
    return float(np.mean(v)) if v.size else float("nan")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file, fsync, rename).

    The file gets the permissions of any file the user writes (`0666` less the
    umask), not the `0600` of the temporary file.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"cannot write {type(v).__name__} as JSON")


def atomic_save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], compressed: bool = True) -> None:
    """`np.savez_compressed` (or, with `compressed=False`, `np.savez`: network weights barely
    compress, and uncompressed is ~10x faster) to `path`, atomically."""
    buf = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buf, **{k: np.asarray(v) for k, v in arrays.items()})  # pyright: ignore[reportArgumentType]
    atomic_write_bytes(path, buf.getvalue())


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)):
        return "" if not np.isfinite(v) else repr(float(v))
    return str(v)


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping], columns: Sequence[str]) -> None:
    """Rows as CSV; NaN and None become empty cells; booleans `true`/`false`."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([_fmt(row.get(c)) for c in columns])
    atomic_write_text(path, buf.getvalue())


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def markdown_table(rows: Sequence[Mapping], columns: Sequence[str], formats: Mapping[str, str] | None = None) -> str:
    """A Markdown table of `rows` (also readable as plain text)."""
    formats = formats or {}

    def cell(c, v):
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            return "-"
        f = formats.get(c)
        return format(v, f) if f else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(c, r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
