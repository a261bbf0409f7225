"""Streaming multipart intake for checkpoint uploads.

Starlette's form parser would spool a whole upload to a temporary file before the route sees it, so a
size limit could only be checked afterwards. Here the body is parsed as it arrives: the ``file`` part
goes chunk by chunk into a hashed, size-checked staging file inside storage (413 as soon as it passes
the limit, nothing kept), and the few small text fields are collected with their own bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import HTTPException, Request, status
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from app.core.storage import StagedFile, Storage, UploadTooLarge

FILE_FIELD = "file"
MAX_FIELDS = 16  # text parts, counted as they arrive (a name sent twice is refused, not overwritten)
MAX_FIELD_BYTES = 256 * 1024  # generous for class_names of a 1000-class model
FORM_OVERHEAD_BYTES = 1024 * 1024  # multipart boundaries and text fields on top of the file itself


@dataclass
class _Part:
    headers: dict[str, bytes] = field(default_factory=dict)
    name: str = ""
    is_file: bool = False
    value: bytearray = field(default_factory=bytearray)


@dataclass
class ReceivedUpload:
    """The text fields of the form and the staged file (the caller commits or discards it)."""

    fields: dict[str, str]
    staged: StagedFile


def _refuse(detail: str, code: int = status.HTTP_422_UNPROCESSABLE_CONTENT) -> HTTPException:
    return HTTPException(status_code=code, detail=detail)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(status_code=status.HTTP_413_CONTENT_TOO_LARGE, detail=str(UploadTooLarge(limit)))


def _body_too_large(limit: int) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_413_CONTENT_TOO_LARGE,
        detail=f"the upload body is larger than {limit + FORM_OVERHEAD_BYTES} bytes (the checkpoint limit of "
        f"{limit} bytes plus {FORM_OVERHEAD_BYTES} for the form fields); send a smaller file or shorter fields",
    )


class _FormCollector:
    """python-multipart callbacks that route file bytes to a buffer and text fields to a dict."""

    def __init__(self) -> None:
        self.part = _Part()
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.fields: dict[str, str] = {}
        self.text_parts = 0
        self.file_seen = False
        self.pending_file_bytes = bytearray()  # written to disk by the route between parser calls
        self.error: HTTPException | None = None

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self.header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self.header_value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _fail(self, error: HTTPException) -> None:
        self.error = self.error or error

    def _part_begin(self) -> None:
        self.part = _Part()

    def _header_end(self) -> None:
        self.part.headers[self.header_field.decode("latin-1").lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self.part.headers.get("content-disposition", b""))
        self.part.name = options.get(b"name", b"").decode("utf-8", "replace")
        self.part.is_file = b"filename" in options
        if self.part.is_file and self.part.name != FILE_FIELD:
            self._fail(_refuse(f"unexpected file field {self.part.name!r}: send the checkpoint as 'file'"))
        elif self.part.is_file and self.file_seen:
            self._fail(_refuse("send exactly one checkpoint file per upload"))
        elif not self.part.is_file:
            self.text_parts += 1
            if self.text_parts > MAX_FIELDS:
                self._fail(_refuse(f"too many form fields (at most {MAX_FIELDS})"))
            elif self.part.name in self.fields:
                self._fail(_refuse(f"form field {self.part.name!r} is sent more than once; send each field once"))
        self.file_seen = self.file_seen or self.part.is_file

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        if self.part.is_file:
            self.pending_file_bytes.extend(data[start:end])
            return
        self.part.value.extend(data[start:end])
        if len(self.part.value) > MAX_FIELD_BYTES:
            self._fail(_refuse(f"form field {self.part.name!r} is longer than {MAX_FIELD_BYTES} bytes"))

    def _part_end(self) -> None:
        if self.error is None and not self.part.is_file:
            try:
                self.fields[self.part.name] = self.part.value.decode("utf-8")
            except UnicodeDecodeError:
                self._fail(_refuse(f"form field {self.part.name!r} is not UTF-8 text"))


async def receive_upload(request: Request, storage: Storage, max_bytes: int) -> ReceivedUpload:
    """Parse a multipart/form-data checkpoint upload into a staging file; raise 413/415/422 on bad input."""
    content_type, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise _refuse(
            "send the checkpoint as multipart/form-data with a 'file' part "
            "(e.g. curl -F file=@model.safetensors -F input_shape=1,28,28 -F num_classes=10 ...)",
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        )
    body_limit = max_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > body_limit:
        raise _too_large(max_bytes)

    collector = _FormCollector()
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    staged = await run_in_threadpool(storage.stage, max_bytes)
    received = 0
    try:
        async for chunk in request.stream():
            # the file alone is capped by the staging file; this caps what a chunked body (no Content-Length
            # to check up front) spends on everything else: part headers, boundaries, text fields
            received += len(chunk)
            if received > body_limit:
                raise _body_too_large(max_bytes)
            parser.write(chunk)
            if collector.error is not None:
                raise collector.error
            if collector.pending_file_bytes:
                data = bytes(collector.pending_file_bytes)
                collector.pending_file_bytes.clear()
                await run_in_threadpool(staged.write, data)
        parser.finalize()
        if collector.error is not None:
            raise collector.error
        if not collector.file_seen:
            raise _refuse("the form has no 'file' part: attach the checkpoint as file=@<path>")
        await run_in_threadpool(staged.close)
    except UploadTooLarge as exc:
        staged.discard()
        raise _too_large(exc.limit) from exc
    except MultipartParseError as exc:
        staged.discard()
        raise _refuse(f"malformed multipart body: {exc}") from exc
    except BaseException:
        staged.discard()
        raise
    return ReceivedUpload(fields=collector.fields, staged=staged)
