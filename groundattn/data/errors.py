"""Errors raised by the readers of the data formats.

Every reader reports malformed input with a :class:`FormatError` that names the
file, where in it (a line, a field, or both) and what was expected, e.g.
``Sentences/12.txt, line 3: unbalanced '[' ...``. The helpers at the end read
UTF-8 text and JSON, and check decoded JSON (or pickled) objects field by field,
raising it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from groundattn.errors import GroundattnError


class FormatError(GroundattnError, ValueError):
    """Malformed input in a data file.

    Attributes:
        path: the file, as given to the reader (``"<caption>"`` for a bare string).
        line: 1-based line number, where the format has lines.
        field: the field or element, e.g. ``type_label`` or ``object[2]/bndbox/xmin``.
        message: what is wrong and what was expected.
    """

    def __init__(
        self,
        path: str | Path,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
    ):
        self.path = str(path)
        self.line = line
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [self.path]
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field is not None:
            where.append(f"field {self.field}")
        return f"{', '.join(where)}: {self.message}"

    def __reduce__(self):
        # Keyword-only arguments are not restored by the default exception pickling;
        # errors must survive the trip back from a DataLoader worker.
        return (_rebuild, (self.path, self.message, self.line, self.field, type(self)))


def _rebuild(
    path: str, message: str, line: int | None, field: str | None, cls: type
) -> FormatError:
    return cls(path, message, line=line, field=field)


class UnsafePickleError(FormatError):
    """A pickle asked for a class or function: refused before any code runs."""


def check_type(value: Any, kind: type | tuple[type, ...], path: str | Path, where: str) -> Any:
    """``value`` if it is a ``kind`` (a bool is not an int), else a FormatError at ``where``."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise FormatError(
            path, f"expected {names}, got {type(value).__name__} {value!r:.60}", field=where or None
        )
    return value


def get_field(
    entry: Any, name: str, kind: type | tuple[type, ...], path: str | Path, where: str = ""
) -> Any:
    """``entry[name]`` of a decoded JSON or pickle object, checked to be a ``kind``.

    Errors name the field as ``<where>.<name>``, e.g. ``annotations[3].answer_type``.
    """
    check_type(entry, dict, path, where)
    field = f"{where}.{name}" if where else name
    if name not in entry:
        raise FormatError(path, "missing field", field=field)
    return check_type(entry[name], kind, path, field)


def load_json(path: str | Path) -> Any:
    """Decoded JSON; a syntax error names the line."""
    try:
        with Path(path).open(encoding="utf-8") as file:
            return json.load(file)
    except json.JSONDecodeError as err:
        raise FormatError(
            path, f"invalid JSON: {err.msg} (column {err.colno})", line=err.lineno
        ) from None


def read_utf8(path: str | Path, encoding: str = "utf-8") -> str:
    """The text of a file; a decoding error names its line."""
    data = Path(path).read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise FormatError(path, f"not valid UTF-8 ({err.reason})", line=line) from None
