"""moto's CopyObject and PutObject patched for the embedded S3 server: S3's semantics, faster.

`patch_moto_copy` (called once by `s3server.main` before moto serves) makes CopyObject
honour `x-amz-copy-source-if-match` as S3 does (412, nothing copied), which moto alone
ignores, hands a single-part source's ETag to its copy, and writes CopyObject's answer
directly (`copy_result_xml`), byte for byte what moto's botocore-model serializer gives,
at a fraction of the cost. Every new object a mutating request puts is handed to the
`put_hook` of the request (`s3server.DurableApp` sets it: `Mirror.prewrite`).
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable
from typing import Any

__all__ = ["copy_result_xml", "patch_moto_copy", "put_hook"]

#: The `x-amz-copy-source-if-match` of the CopyObject this thread is serving.
_copy_if_match: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "nomadpaas_s3_copy_if_match", default=None
)
#: The FakeKey this thread's CopyObject copies from (for its ETag).
_copying: contextvars.ContextVar[Any] = contextvars.ContextVar("nomadpaas_s3_copying", default=None)
#: Called with each FakeKey moto's put_object makes for this thread's mutating request
#: (not a copy's): the mirror starts writing its bytes while moto still hashes them.
put_hook: contextvars.ContextVar[Callable[[Any], None] | None] = contextvars.ContextVar(
    "nomadpaas_s3_on_put", default=None
)
#: Set while moto's CopyObject handler of this thread runs (its answer is ours to write).
_in_copy_response: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "nomadpaas_s3_in_copy_response", default=False
)
_PLAIN_ETAG = re.compile(r"[0-9a-f]{32}")
#: What `copy_result_xml` writes verbatim: a quoted MD5 (or multipart) ETag, and a time
#: as moto's `last_modified_ISO8601` spells it (which its serializer gives back as is).
_XML_SAFE_ETAG = re.compile(r'"[0-9a-f]{32}(-[0-9]{1,5})?"')
_S3_ISO8601 = re.compile(
    r"[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.000Z"
)
_COPY_RESULT_XML = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<CopyObjectResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    "<ETag>{etag}</ETag><LastModified>{last_modified}</LastModified></CopyObjectResult>"
)


def copy_result_xml(result: object) -> str | None:
    """The XML body moto's serializer makes of CopyObject's result, or None if unsure.

    moto runs `{"CopyObjectResult": {"ETag", "LastModified"}}` through its botocore-model
    serializer (~0.5 ms: routing the request to an operation, walking the output shape,
    parsing and re-formatting the time). With an ETag of hex digits and a time in moto's
    own `.000Z` form nothing needs escaping and the document is fixed; anything else (a
    checksum, another shape) is left to moto.
    """
    if type(result) is not dict or result.keys() != {"CopyObjectResult"}:
        return None
    fields = result["CopyObjectResult"]
    if type(fields) is not dict or fields.keys() != {"ETag", "LastModified"}:
        return None
    etag, last_modified = fields["ETag"], fields["LastModified"]
    if not (
        isinstance(etag, str)
        and isinstance(last_modified, str)
        and _XML_SAFE_ETAG.fullmatch(etag)
        and _S3_ISO8601.fullmatch(last_modified)
    ):
        return None
    return _COPY_RESULT_XML.format(etag=etag, last_modified=last_modified)


def patch_moto_copy() -> None:
    """Teach moto's CopyObject what real S3 does and moto 5 does not.

    - `x-amz-copy-source-if-match`: moto ignores it; S3 answers 412 PreconditionFailed
      and copies nothing when the source's ETag differs (nomadpaas.storage.promote
      relies on it). Checked against the very FakeKey moto copies, so a source replaced
      a moment before cannot slip through.
    - The copy's ETag: moto hashes the copied bytes again; a single-part source's ETag
      already is their MD5, so it is handed over (a 0.6 MB slug's MD5 costs ~1 ms).
    - The answer's XML: written by `copy_result_xml` when it can say exactly what moto's
      serializer would (the serializer's own header, Content-Type, is kept too).
    - Every new object a mutating request puts (a copy excepted: it links) is handed to
      `Mirror.prewrite` at once, so a large one's data file is written and synced while
      moto computes its MD5 (GIL released by both) rather than after the answer is built.
    """
    from moto import settings
    from moto.core.responses import ActionResult
    from moto.s3.exceptions import PreconditionFailed
    from moto.s3.models import S3Backend
    from moto.s3.responses import S3Response

    respond, copy, put = S3Response.copy_object, S3Backend.copy_object, S3Backend.put_object
    serialized = S3Response.serialized

    def copy_object_response(self: Any) -> Any:
        token = _copy_if_match.set(self.headers.get("x-amz-copy-source-if-match"))
        in_copy = _in_copy_response.set(True)
        try:
            return respond(self)
        finally:
            _in_copy_response.reset(in_copy)
            _copy_if_match.reset(token)

    def serialized_response(self: Any, action_result: Any) -> Any:
        if (
            _in_copy_response.get()
            and type(action_result) is ActionResult
            and not settings.PRETTIFY_RESPONSES
        ):
            body = copy_result_xml(action_result.result)
            if body is not None:
                # What moto's serializer answers: its own header, then the response's.
                headers = {"Content-Type": "application/xml"}
                headers.update(self.response_headers)
                return 200, headers, body
        return serialized(self, action_result)

    def copy_object(self: Any, src_key: Any, *args: Any, **kwargs: Any) -> None:
        wanted = _copy_if_match.get()
        if wanted is not None and wanted.strip().strip('"') not in ("*", src_key.etag.strip('"')):
            raise PreconditionFailed("x-amz-copy-source-If-Match")
        token = _copying.set(src_key)
        try:
            copy(self, src_key, *args, **kwargs)
        finally:
            _copying.reset(token)

    def put_object(self: Any, *args: Any, **kwargs: Any) -> Any:
        source = _copying.get()
        if source is not None:
            _copying.set(None)  # only the copy's own put
            known = source._etag  # computed once per object; None if never asked
            if (
                kwargs.get("etag") is None
                and kwargs.get("multipart") is None
                and source.multipart is None
                and isinstance(known, str)
                and _PLAIN_ETAG.fullmatch(known)
            ):
                kwargs["etag"] = known
        fake = put(self, *args, **kwargs)
        hook = put_hook.get()
        if source is None and hook is not None:
            hook(fake)
        return fake

    S3Response.copy_object = copy_object_response  # type: ignore[method-assign]
    S3Response.serialized = serialized_response  # type: ignore[method-assign]
    S3Backend.copy_object = copy_object  # type: ignore[method-assign]
    S3Backend.put_object = put_object  # type: ignore[method-assign]
