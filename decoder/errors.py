"""Errors raised at the library boundary."""

from __future__ import annotations


class DecoderError(Exception):
    """Base class of every error this package raises on purpose."""


class ScriptError(DecoderError):
    """A device-class script cannot be compiled.

    The message names the device class, the element (``parseElements[2]``)
    and, for formulas, the line and column with a caret under the bad token.
    """

    def __init__(
        self,
        message: str,
        *,
        device_class: str | None = None,
        element: str | None = None,
        source: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ):
        self.reason = message
        self.device_class = device_class
        self.element = element
        self.source = source
        self.line = line
        self.column = column
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.device_class is not None:
            where.append(f"device class {self.device_class!r}")
        if self.element is not None:
            where.append(self.element)
        if self.line is not None:
            where.append(f"line {self.line}, column {self.column}")
        text = (", ".join(where) + ": " if where else "") + self.reason
        if self.source is not None and self.line is not None:
            lines = self.source.splitlines()
            src_line = lines[self.line - 1] if 0 < self.line <= len(lines) else ""
            shown, caret = _window(src_line, max((self.column or 1) - 1, 0))
            text += f"\n    {shown}\n    {' ' * caret}^"
        return text

    def located(self, *, device_class: str | None = None, element: str | None = None) -> ScriptError:
        """Return a copy that also names the class and element."""
        return ScriptError(
            self.reason,
            device_class=device_class if device_class is not None else self.device_class,
            element=element if element is not None else self.element,
            source=self.source,
            line=self.line,
            column=self.column,
        )


_WINDOW = 40  # characters shown each side of the caret in a long formula line


def _window(line: str, column: int) -> tuple[str, int]:
    """The part of a long source line around ``column`` (``...`` where cut), and the caret's place in it."""
    start = max(column - _WINDOW, 0)
    end = min(column + _WINDOW, len(line))
    shown = line[start:end]
    caret = column - start
    if start > 0:
        shown, caret = "..." + shown, caret + 3
    if end < len(line):
        shown += "..."
    return shown, caret


class InputError(DecoderError):
    """Input could not be read (a file, a stream, a registry)."""


class InputTruncated(InputError):
    """Input stopped being readable partway (truncated or corrupt compressed data, a read error).

    Raised after every whole line before the failure was delivered: ``line`` is
    the last line read (0 when none was)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


class OutputError(DecoderError):
    """Output could not be written (a file, a directory), or would replace data this run did not write."""
