"""CSV files as people make them in spreadsheets: read them robustly, write them so spreadsheets cannot run them.

:func:`read_csv` finds the encoding (UTF-8, or UTF-16/UTF-32 with a byte-order mark) and the delimiter (``,``, ``;``,
tab or ``|``, from the header line), strips NUL bytes, and splits the text into records itself, so that one broken
record is one rejected line with the real cause (a field over :data:`MAX_FIELD_BYTES`, a quote that is never closed, a
wrong field count) while every other record is kept. :func:`write_csv` is the one writer for every CSV the project
exports: cells that a spreadsheet would evaluate (leading ``=``, ``+``, ``-``, ``@``, tab or carriage return) get a
leading ``'``; :func:`read_csv` removes that ``'`` again, so an exported file ingests back unchanged.
:func:`number_reader` reads prices written with a decimal point or, when the whole file uses one, a decimal comma.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from mmsupport.errors import InvalidInput

#: Longest field accepted, in UTF-8 bytes; a longer one rejects its record.
MAX_FIELD_BYTES = 65_536
#: Delimiters recognised in the header line, preferred in this order when counts tie.
DELIMITERS = (",", ";", "\t", "|")
#: First characters that make a spreadsheet treat a cell as a formula.
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")
#: Largest number :func:`number_reader` accepts.
MAX_NUMBER = 1e15

_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))
_NEWLINE = re.compile(r"\r\n|\r|\n")
_QUOTED = re.compile(r'"([^"]*(?:""[^"]*)*)"')


@dataclass
class CsvFile:
    """A parsed CSV: the header, the good records as ``(line, fields)`` and the broken ones as ``(line, reason)``.
    Lines are the file's line numbers (1 is the header) where each record starts."""

    header: list[str]
    rows: list[tuple[int, list[str]]] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)
    encoding: str = "utf-8"
    delimiter: str = ","


def read_csv(path: str | Path, *, max_field_bytes: int = MAX_FIELD_BYTES) -> CsvFile:
    """Read a CSV file with a header row. Bytes that are not UTF-8 survive as surrogates (``\\udc80``-``\\udcff``)
    so the record holding them can be rejected alone; a file that cannot be a CSV at all raises
    :class:`InvalidInput` naming what was found (encoding, empty file, broken header)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise InvalidInput(f"Cannot read {path}: {error.strerror}.", hint="Check the --csv path.") from None
    text, encoding = _decode(path, raw)
    text = text.replace("\x00", "")
    delimiter = _sniff_delimiter(text)
    records = _records(text, delimiter, max_field_bytes)
    first = next(records, None)
    if first is None:
        raise InvalidInput(f"{path} is empty.", hint="Pass a CSV file with a header row.")
    _, header, problem = first
    if problem:
        raise InvalidInput(f"The header row of {path} is not valid CSV: {problem}.",
                           hint="Fix the header line (save the file as CSV from a spreadsheet).")
    if any("\udc80" <= ch <= "\udcff" for name in header for ch in name):
        raise InvalidInput(f"The header row of {path} is not UTF-8 (probably Windows-1252 or Latin-1).",
                           hint="Save the file as UTF-8 CSV (in Excel: 'CSV UTF-8').")
    table = CsvFile([name.strip() for name in header], encoding=encoding, delimiter=delimiter)
    for line, fields, problem in records:
        if problem is None and not any(f.strip() for f in fields):
            continue
        if problem is None and len(fields) != len(header):
            problem = f"has {len(fields)} fields, the header has {len(header)}"
            if len(fields) > len(header):
                problem += f" (a value that holds {delimiter!r} must be in double quotes)"
        if problem:
            table.bad.append((line, problem))
        else:
            table.rows.append((line, [_unescape(f) for f in fields]))
    return table


def _decode(path: Path, raw: bytes) -> tuple[str, str]:
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(encoding), encoding
            except UnicodeDecodeError as error:
                raise InvalidInput(f"{path} starts with a {encoding.upper()} byte-order mark but byte {error.start} "
                                   f"is not valid {encoding.upper()}.", hint="Save the file as UTF-8 CSV.") from None
    sample = raw[:4096]
    if sample and sample.count(0) > len(sample) // 4:
        raise InvalidInput(f"{path} looks like UTF-16 or UTF-32 without a byte-order mark (a quarter of its bytes "
                           "are NUL).", hint="Save the file as UTF-8 CSV, or as UTF-16 with a byte-order mark.")
    return raw.removeprefix(codecs.BOM_UTF8).decode("utf-8", errors="surrogateescape"), "utf-8"


def _sniff_delimiter(text: str) -> str:
    """The delimiter used most in the header line (outside quotes); a comma when there is none."""
    first = re.sub(r'"[^"]*"', "", _NEWLINE.split(text, 1)[0])
    counts = [first.count(d) for d in DELIMITERS]
    return DELIMITERS[counts.index(max(counts))] if max(counts) else ","


def _records(text: str, delimiter: str, max_field_bytes: int):
    """Yield ``(line, fields, None)`` per record, or ``(line, fields, reason)`` for a broken one; the first record is
    the header. After a quote that never closes properly, reading resumes on the line after the one it opened on."""
    starts = [0] + [m.end() for m in _NEWLINE.finditer(text)]
    line_of = lambda pos: bisect.bisect_right(starts, pos)  # noqa: E731 - 1-based line number of a position
    unquoted = re.compile(f"[^{re.escape(delimiter)}\r\n]*")
    pos, end, header = 0, len(text), None
    while pos < end:
        line, fields, problem, opened, resync = line_of(pos), [], None, None, False
        while True:
            quoted = _QUOTED.match(text, pos) if text.startswith('"', pos) else None
            if text.startswith('"', pos) and (quoted is None or _stray_after(text, quoted, delimiter)):
                opened = line_of(pos)
                problem, resync = f"a quote opened on line {opened} is never closed", True
                break
            if quoted:
                if opened is None and _NEWLINE.search(quoted.group(1)):
                    opened = line_of(pos)
                value, pos = quoted.group(1).replace('""', '"'), quoted.end()
                tail = unquoted.match(text, pos)  # text after a closing quote on the same line joins the field
                value, pos = value + tail.group(), tail.end()
            else:
                match = unquoted.match(text, pos)
                value, pos = match.group(), match.end()
            if problem is None and len(value) * 4 > max_field_bytes:
                size = len(value.encode("utf-8", "surrogateescape"))
                if size > max_field_bytes:
                    name = f" ({header[len(fields)].strip()!r})" if header and len(fields) < len(header) else ""
                    problem = f"field {len(fields) + 1}{name} is {size} bytes, over the limit of {max_field_bytes}"
            fields.append(value)
            if not text.startswith(delimiter, pos):
                break
            pos += 1
        if problem is None and opened is not None and header is not None and len(fields) != len(header):
            resync = True
            problem = (f"a quote opened on line {opened} runs to line {line_of(pos)} and leaves {len(fields)} "
                       f"fields (the header has {len(header)}): a closing quote is probably missing")
        if resync:
            pos = starts[opened] if opened < len(starts) else end
        else:
            pos += 2 if text.startswith("\r\n", pos) else 1
        header = fields if header is None else header
        yield line, fields, problem


def _stray_after(text: str, quoted: re.Match, delimiter: str) -> bool:
    """A quoted field that spans lines must end with a quote followed by the delimiter or a line end; otherwise its
    opening quote was never closed and a later quote was taken for the closing one."""
    after = text[quoted.end():quoted.end() + 1]
    spans_lines = "\n" in quoted.group(1) or "\r" in quoted.group(1)
    return spans_lines and after not in ("", delimiter, "\r", "\n")


def _unescape(value: str) -> str:
    """Undo :func:`safe_cell`: ``'=1+1`` reads back as ``=1+1``."""
    return value[1:] if value.startswith("'") and value[1:2] and value[1] in FORMULA_LEADS else value


def safe_cell(value) -> str:
    """A value as CSV cell text that spreadsheets show rather than evaluate (``None`` becomes an empty cell)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_LEADS) else text


def write_csv(path: str | Path, header: list[str], rows: Iterable[Iterable]) -> Path:
    """Write a UTF-8 CSV that is safe to open in a spreadsheet (every cell through :func:`safe_cell`)."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([safe_cell(name) for name in header])
        writer.writerows([safe_cell(value) for value in row] for row in rows)
    return path


_POINT = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_COMMA = re.compile(r"\d{1,3}(?:\.\d{3})+(?:,\d+)?|\d+(?:,\d+)?")


def number_reader(values: Iterable[str | None]) -> Callable[[str], float]:
    """A parser for one column of non-negative numbers, given all of the column's values.

    A decimal point is the default (``1,299.50``); a decimal comma (``12,99``, ``1.299,50``) is read as such only when
    no value in the column needs a decimal point. The parser raises ``ValueError`` whose message completes the
    sentence "price '…' …": negative, not a number (``nan``, ``inf``, ``1e308``), too large, or a decimal comma
    in a column that otherwise uses a decimal point.
    """
    point_example = comma_example = None
    for value in values:
        value = (value or "").strip()
        is_point, is_comma = bool(_POINT.fullmatch(value)), bool(_COMMA.fullmatch(value))
        if is_point and not is_comma:
            point_example = point_example or value
        elif is_comma and not is_point:
            comma_example = comma_example or value
    comma_style = comma_example is not None and point_example is None

    def read(value: str) -> float:
        value = value.strip()
        if comma_style and _COMMA.fullmatch(value):
            number = float(value.replace(".", "").replace(",", "."))
        elif _POINT.fullmatch(value):
            number = float(value.replace(",", ""))
        elif _COMMA.fullmatch(value):
            raise ValueError(f"has a decimal comma but other values in this column have a decimal point (e.g. "
                             f"{point_example!r}); write it as {value.replace('.', '').replace(',', '.')}")
        elif value.startswith("-"):
            raise ValueError("is negative")
        else:
            raise ValueError("is not a number (write digits with an optional decimal part, e.g. 12.99)")
        if not math.isfinite(number) or number > MAX_NUMBER:
            raise ValueError(f"is larger than {MAX_NUMBER:.0e}")
        return number

    return read
