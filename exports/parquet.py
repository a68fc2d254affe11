"""A Parquet copy of a JSONL export, typed from every row: `datasets` loads it at any size.

`datasets.load_dataset("json")` types each column from the first block it reads, so an export whose first rows hold
nulls (a pairwise file of unscored patches first, a raw file whose early patches have no labels) fails to load past
that block. The Parquet file beside the JSONL carries one schema, unified over all rows in a first pass, so
`load_dataset("parquet", data_files=...)` (or pandas, or polars) reads it whole. Two passes over the JSONL, a chunk
of rows at a time: memory stays bounded by the chunk, not the export.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

CHUNK_ROWS = 500


def parquet_path(jsonl: Path) -> Path:
    """Where the Parquet copy of the export `jsonl` goes: the same name with `.parquet`."""
    return jsonl.with_suffix(".parquet")


def _chunks(jsonl: Path, size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    with jsonl.open(encoding="utf-8") as handle:
        for line in handle:
            chunk.append(json.loads(line))
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def write_parquet(jsonl: Path, out: Path, *, chunk_rows: int = CHUNK_ROWS) -> dict[str, Any]:
    """Write the rows of `jsonl` to `out` as Parquet under one schema unified over every row; return
    {"file", "sha256", "bytes", "rows"} for the manifest, or {"error": why} when the rows admit no one schema
    (a column that is a number in one row and text in another). Nothing is left at `out` then."""
    try:
        # pa.array types a chunk over every row (from_pylist would take the columns of its first row only).
        schemas = [pa.Table.from_struct_array(pa.array(chunk)).schema for chunk in _chunks(jsonl, chunk_rows)]
        if not schemas:
            return {"error": "the export has no row"}
        schema = pa.unify_schemas(schemas, promote_options="permissive")
        rows = 0
        part = out.with_name(f".{out.name}.part")
        with pq.ParquetWriter(part, schema) as writer:
            for chunk in _chunks(jsonl, chunk_rows):
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                rows += len(chunk)
        part.replace(out)
    except (pa.ArrowException, ValueError) as exc:
        out.with_name(f".{out.name}.part").unlink(missing_ok=True)
        return {"error": f"the rows admit no single Parquet schema: {exc}"}
    digest = hashlib.sha256()
    with out.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return {"file": out.name, "sha256": digest.hexdigest(), "bytes": out.stat().st_size, "rows": rows}
