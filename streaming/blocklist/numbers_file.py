"""File input for the allowlist: the numbers of registered businesses from CSV or Parquet."""

from __future__ import annotations

from pathlib import Path

from streaming.blocklist.errors import BlocklistError


def read_numbers(path: str | Path) -> list[str]:
    """Numbers from a CSV or Parquet file with an ``a_number`` or ``number`` column (the
    simulator's registered-businesses file has ``a_number``)."""
    import pandas as pd

    path = Path(path)
    try:
        if path.suffix.lower() in {".parquet", ".pq"} or path.is_dir():
            frame = pd.read_parquet(path)
        elif path.suffix.lower() in {".csv", ".txt"}:
            frame = pd.read_csv(path, dtype=str)
        else:
            raise BlocklistError(f"{path}: expected a .csv or .parquet file of numbers")
    except (OSError, ValueError) as exc:
        raise BlocklistError(f"{path}: cannot read numbers ({str(exc).splitlines()[0]})") from None
    column = next((c for c in ("a_number", "number") if c in frame.columns), None)
    if column is None:
        raise BlocklistError(f"{path}: no 'a_number' or 'number' column (has {', '.join(map(str, frame.columns))})")
    return [str(v).strip() for v in frame[column].dropna() if str(v).strip()]
