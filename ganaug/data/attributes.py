"""Continuous attributes of an imagefolder dataset's images (the conditions `gan_conditions` names): each split folder
may hold an `attributes.csv` whose rows are `path relative to the split folder, value, value, ...`, e.g.
`cat/0001.jpg,12.5,0.3`; an optional first row naming the columns (`file,distance,mass`), else the columns are called
col1, col2, ... Every image needs one row; rows naming no image are ignored. Read afresh each time (never cached)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ganaug.data.config import DataError

ATTRIBUTES_FILE = "attributes.csv"  # per split folder of an imagefolder dataset


def read_attributes(root: Path, files: list[tuple[Path, int, int]]
                     ) -> tuple[tuple[str, ...], np.ndarray | None]:
    """Column names and float32 [len(files), k] attributes from the attributes.csv of every split folder, in the
    order of `files`; ((), None) when no split folder has one. Every bad row ends in one DataError naming the
    file and the row."""
    folders = {split: root / ("train", "test")[split] if split >= 0 else root for _, _, split in files}
    tables = {split: folder / ATTRIBUTES_FILE for split, folder in folders.items()}
    present = [split for split, path in tables.items() if path.is_file()]
    if not present:
        return (), None
    if len(present) < len(tables):
        absent = next(path for split, path in tables.items() if split not in present)
        raise DataError(f"{absent}: missing, but {tables[present[0]]} exists; every split folder needs its "
                        f"{ATTRIBUTES_FILE} (rows: file relative to the split folder, then the values)")
    columns, rows = {}, {}
    for split, path in tables.items():
        columns[split], rows[split] = _read_attribute_table(path)
    names = columns[present[0]]
    for split, path in tables.items():
        if columns[split] != names:
            raise DataError(f"{path}: columns {', '.join(columns[split])} differ from those of "
                            f"{tables[present[0]]} ({', '.join(names)}); every split needs the same columns")
    values: list[list[float] | None] = []
    missing: list[str] = []
    for path, _, split in files:
        key = path.relative_to(folders[split]).as_posix()
        if key not in rows[split]:
            missing.append(key)
        values.append(rows[split].get(key))
    if missing:
        table = tables[next(split for path, _, split in files
                            if path.relative_to(folders[split]).as_posix() == missing[0])]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{table}: no row for image {missing[0]}{more}; every image needs a row "
                        f"'{missing[0]},{','.join('<' + n + '>' for n in names)}'")
    return names, np.asarray(values, dtype=np.float32).reshape(len(files), len(names))


def _read_attribute_table(path: Path) -> tuple[tuple[str, ...], dict[str, list[float]]]:
    """(column names, {file key: values}) of one attributes.csv; the first row is a header when none of its
    values is a number."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            lines = [(reader.line_num, row) for reader in [csv.reader(file)] for row in reader
                     if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: cannot be read as CSV ({error})") from None
    if not lines:
        raise DataError(f"{path}: is empty; expected rows 'file,value,...' (optionally a header 'file,name,...')")
    first = [cell.strip() for cell in lines[0][1]]
    if len(first) > 1 and not any(_parse_number(cell) is not None for cell in first[1:]):
        names, lines = tuple(first[1:]), lines[1:]
        empty = [str(k + 2) for k, name in enumerate(names) if not name]
        if empty or len(set(names)) != len(names) or any("," in name for name in names):
            problem = f"column {', '.join(empty)} has no name" if empty else "a column name repeats" \
                if len(set(names)) != len(names) else "a column name holds a comma (gan_conditions separates by commas)"
            raise DataError(f"{path}: row 1 (the header): {problem}; valid: distinct names such as file,distance,mass")
    else:
        names = tuple(f"col{k}" for k in range(1, len(first)))
    if not names:
        raise DataError(f"{path}: row {lines[0][0]}: no values after the file name; expected 'file,value,...'")
    table: dict[str, list[float]] = {}
    where: dict[str, int] = {}
    for line, row in lines:
        cells = [cell.strip() for cell in row]
        key = cells[0].replace("\\", "/")
        if len(cells) - 1 != len(names):
            raise DataError(f"{path}: row {line} ({key}): {len(cells) - 1} value(s), expected {len(names)} "
                            f"({', '.join(names)})")
        values = []
        for name, cell in zip(names, cells[1:]):
            value = _parse_number(cell)
            if value is None:
                raise DataError(f"{path}: row {line} ({key}): {name}={cell!r} is not a number; valid: a finite "
                                "number such as 0.5 or 1e3")
            values.append(value)
        if key in table:
            raise DataError(f"{path}: row {line}: {key} already has row {where[key]}; valid: one row per image")
        table[key], where[key] = values, line
    return names, table


def _parse_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None
