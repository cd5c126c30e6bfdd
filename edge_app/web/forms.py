"""The request class of the app: werkzeug's form parser with its limits on parts and field sizes, and
a 413 that says which limit it hit (too many parts, a field too large) rather than 'body too large'."""

from __future__ import annotations

from typing import Any

from edgeclf.edge_app.web.responses import size_text

MAX_FORM_PARTS = 100  # the upload form has one; werkzeug refuses more with 413
MAX_FORM_FIELD = 512 * 1024  # bytes of a text (non-file) form field, or of a whole urlencoded body


class _CountingStream:
    """A request body seen by the form parser: counts multipart delimiters and notes a failed read
    (the body over the size limit), so a 413 from the parser can say which limit it hit."""

    def __init__(self, inner: Any, boundary: str) -> None:
        self._inner = inner
        self._delimiter = b"--" + boundary.encode("ascii", "replace") if boundary else b""
        self._tail = b""
        self.delimiters = 0
        self.read_failed = False

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._inner.read(size)
        except BaseException:
            self.read_failed = True
            raise
        if self._delimiter and data:
            window = self._tail + data  # the tail is shorter than a delimiter: none is counted twice
            self.delimiters += window.count(self._delimiter)
            self._tail = window[-(len(self._delimiter) - 1) :]
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def request_class(flask: Any) -> Any:
    """Flask's Request whose form parser tells 'too many parts' and 'field too large' from 'body too large'."""
    from werkzeug.exceptions import RequestEntityTooLarge
    from werkzeug.formparser import FormDataParser

    class Parser(FormDataParser):
        def parse(self, stream: Any, mimetype: str, content_length: int | None, options: Any = None) -> Any:
            boundary = (options or {}).get("boundary", "") if mimetype == "multipart/form-data" else ""
            counted = _CountingStream(stream, boundary)
            try:
                return super().parse(counted, mimetype, content_length, options)
            except RequestEntityTooLarge as exc:
                if counted.read_failed:  # the body itself is over the upload limit
                    raise
                if self.max_form_parts is not None and counted.delimiters > self.max_form_parts:
                    exc.form_problem = f"too many parts in the form (at most {self.max_form_parts:,}): send one image"
                else:
                    exc.form_problem = (
                        f"a form field is larger than {size_text(self.max_form_memory_size or 0)}: send the image "
                        "as a file (curl -F image=@FILE) or as the request body (--data-binary @FILE)"
                    )
                raise

    class Request(flask.Request):
        form_data_parser_class = Parser

    return Request
