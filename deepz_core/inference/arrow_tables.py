"""Predictions as tables: astropy <-> Arrow (2-D columns as fixed-size lists, qp's 'mixmod'
layout in Parquet) and the files of a partitioned predictions dataset (its ``part-*.parquet``
and the ``_SUCCESS`` file a finished one holds). The ground that streaming, the qp files, the
run's own predictions and the reports share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

SUCCESS = "_SUCCESS"  # in a dataset folder whose every part is written


def arrow_table(table: Any) -> pa.Table:
    """An astropy Table as Arrow: 2-D columns become fixed-size lists (qp 'mixmod' layout)."""
    cols = {}
    for name in table.colnames:
        a = np.ascontiguousarray(table[name])
        flat = pa.array(a.reshape(-1)) if a.ndim == 2 else None
        cols[name] = pa.FixedSizeListArray.from_arrays(flat, a.shape[1]) if a.ndim == 2 else a
    return pa.table(cols)


def dataset_files(folder: Path | str) -> list[str]:
    """The part files of a partitioned predictions dataset, in order."""
    return [str(p) for p in sorted(Path(folder).glob("part-*.parquet"))]


def astropy_table(table: pa.Table) -> Any:
    """An Arrow table as astropy: fixed-size list columns become (N, C) columns."""
    from astropy.table import Table

    out = Table()
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            out[name] = col.flatten().to_numpy().reshape(len(col), col.type.list_size)
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            # fixed-width text (nulls ""): an object column cannot be written to FITS
            out[name] = np.asarray(col.fill_null("").to_pylist(), dtype=str)
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out
