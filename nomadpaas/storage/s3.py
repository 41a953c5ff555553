"""S3Storage: the `Storage` protocol over any S3 (AWS, MinIO, the embedded moto server).

The only module that imports boto3/botocore, and only when an `S3Storage` is built, so
importing the library stays fast. Every botocore failure is translated into the typed
errors of `nomadpaas.errors` (`_translated`): the endpoint not answering becomes
StorageUnreachable naming the endpoint, refused credentials name the AWS variables, a
missing object is NotFound. No botocore traceback escapes (errors are raised `from None`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from nomadpaas.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    NomadPaasError,
    NotFound,
    PermissionDenied,
    StorageUnreachable,
)
from nomadpaas.storage.base import DEFAULT_PRESIGN_EXPIRY_S, ObjectInfo, ProgressCallback
from nomadpaas.storage.presign import PathStylePresigner
from nomadpaas.storage.progress import ProgressCounter

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from nomadpaas.settings import Settings

__all__ = ["S3Storage"]

E = TypeVar("E", bound=BaseException)

#: Objects at least this large go up in parts (and parts are this large): 8 MiB, S3's
#: minimum part size is 5 MiB and 8 MiB keeps a 1 GiB slug at 128 parts.
MULTIPART_THRESHOLD_BYTES = 8 * 1024 * 1024
#: Parts uploaded in parallel; more buys nothing against a single-host server.
MAX_CONCURRENCY = 4
#: Total attempts per request in botocore's "standard" retry mode (1 try + 2 retries):
#: enough to ride out a restart, short enough that a stopped server fails in seconds.
MAX_ATTEMPTS = 3
#: Seconds to open a TCP connection: loopback or LAN answers at once.
CONNECT_TIMEOUT_S = 5.0
#: Seconds without a byte before a read fails: a large part on a slow link still fits.
READ_TIMEOUT_S = 60.0
#: ListObjectsV2 and DeleteObjects both cap a batch at 1000 keys.
_BATCH_KEYS = 1000

_CREDENTIAL_HINT = (
    "Check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE); for the embedded "
    'stack run eval "$(nomadpaas up --env)".'
)
_NO_BUCKET_HINT = (
    "Run `nomadpaas up` (embedded stack) or create the bucket named by NOMADPAAS_S3_BUCKET."
)
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
}
_DENIED_CODES = {"403", "AccessDenied", "AllAccessDisabled", "AccountProblem"}


class S3Storage:
    """Objects in one S3 bucket.

    Parameters:
        endpoint_url: the S3 endpoint (`NOMADPAAS_S3_ENDPOINT`); None means AWS itself.
            Any other endpoint is addressed path-style (`http://host/bucket/key`).
        bucket: the bucket every key lives in.
        region: region to sign for; default from the AWS chain, else us-east-1.
        access_key_id, secret_access_key, session_token, profile: explicit credentials;
            whatever is None comes from the standard AWS chain.
        max_attempts: total attempts per request (botocore "standard" retries).
        connect_timeout_s, read_timeout_s: socket timeouts per attempt.
        multipart_threshold: uploads at least this large use multipart (bytes).
    """

    def __init__(
        self,
        endpoint_url: str | None,
        bucket: str,
        *,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
        multipart_threshold: int = MULTIPART_THRESHOLD_BYTES,
    ) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self._bucket = bucket
        #: The bucket answered once: a later 404 on HEAD is the key's, not the bucket's
        #: (saves a HEAD bucket per miss; a bucket deleted meanwhile fails the next write).
        self._bucket_seen = False
        self.endpoint_url = endpoint_url.rstrip("/") if endpoint_url else None
        #: How errors name the endpoint.
        self.endpoint = self.endpoint_url or "AWS S3"
        custom = endpoint_url is not None
        config = Config(
            signature_version="s3v4",
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            # Other S3 implementations want path-style and often lack the newer
            # default CRC checksums (aws-chunked trailers); send those only when required.
            s3={"addressing_style": "path" if custom else "auto"},
            request_checksum_calculation="when_required" if custom else "when_supported",
            response_checksum_validation="when_required" if custom else "when_supported",
        )
        with _translated(self.endpoint, "open a session"):
            session = boto3.session.Session(
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                aws_session_token=session_token,
                region_name=region,
                profile_name=profile,
            )
            self._client: S3Client = session.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=region or session.region_name or "us-east-1",
                config=config,
            )
        self._region = self._client.meta.region_name
        #: The client's credentials (refreshed by botocore when they can expire) and, for
        #: a path-style endpoint, the stdlib presigner that signs URLs with them.
        with _translated(self.endpoint, "load credentials"):
            self._credentials = session.get_credentials()
        self._presigner = (
            PathStylePresigner(self.endpoint_url, self._region)
            if self.endpoint_url is not None and PathStylePresigner.supported(self.endpoint_url)
            else None
        )
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=max(multipart_threshold, 5 * 1024 * 1024),
            max_concurrency=MAX_CONCURRENCY,
            use_threads=True,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> S3Storage:
        """The store `settings` describe; AWS_* values that were set are passed explicitly."""
        aws = settings.aws
        kwargs: dict[str, Any] = {
            "region": aws.get("AWS_REGION") or aws.get("AWS_DEFAULT_REGION"),
            "access_key_id": aws.get("AWS_ACCESS_KEY_ID"),
            "secret_access_key": aws.get("AWS_SECRET_ACCESS_KEY"),
            "session_token": aws.get("AWS_SESSION_TOKEN"),
            "profile": aws.get("AWS_PROFILE"),
        }
        kwargs.update(overrides)
        return cls(settings.s3_endpoint, settings.s3_bucket, **kwargs)

    @property
    def bucket(self) -> str:
        return self._bucket

    def __repr__(self) -> str:
        return f"S3Storage(endpoint={self.endpoint!r}, bucket={self._bucket!r})"

    def close(self) -> None:
        """Close the client's HTTP connections. A later call opens them again as needed."""
        self._client.close()

    # -- bucket -----------------------------------------------------------------------

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists; safe to call any number of times. Once this
        storage has seen the bucket it does not ask again (a write that finds it gone
        creates it, see `_bucket_seen`)."""
        if self._bucket_seen:
            return
        with _translated(self.endpoint, f"check bucket {self._bucket}", bucket=self._bucket):
            try:
                self._client.head_bucket(Bucket=self._bucket)
                self._bucket_seen = True
                return
            except Exception as exc:
                if _code(exc) not in _NOT_FOUND_CODES | {"NoSuchBucket"}:
                    raise
        with _translated(self.endpoint, f"create bucket {self._bucket}", bucket=self._bucket):
            try:
                if self._region == "us-east-1":
                    self._client.create_bucket(Bucket=self._bucket)
                else:
                    self._client.create_bucket(
                        Bucket=self._bucket,
                        CreateBucketConfiguration={"LocationConstraint": self._region},  # type: ignore[typeddict-item]
                    )
            except Exception as exc:
                code = _code(exc)
                if code == "BucketAlreadyOwnedByYou":
                    self._bucket_seen = True
                    return  # another process created it a moment ago
                if code == "BucketAlreadyExists":
                    raise AlreadyExists(
                        f"Bucket {self._bucket} at {self.endpoint} belongs to someone else.",
                        hint="Choose another name with NOMADPAAS_S3_BUCKET.",
                    ) from None
                raise
        self._bucket_seen = True

    # -- objects ----------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        """True when the object exists; a missing *bucket* is NotFound, not False."""
        with self._translated("read", key):
            try:
                self._client.head_object(Bucket=self._bucket, Key=key)
                self._bucket_seen = True
                return True
            except Exception as exc:
                if _code(exc) not in _NOT_FOUND_CODES:
                    raise
        if self._bucket_seen:
            return False
        # A HEAD 404 has no body, so it cannot say whether the key or the bucket is
        # missing; ask about the bucket so callers do not upload into nowhere.
        with _translated(self.endpoint, f"check bucket {self._bucket}", bucket=self._bucket):
            try:
                self._client.head_bucket(Bucket=self._bucket)
            except Exception as exc:
                if _code(exc) in _NOT_FOUND_CODES:
                    raise NotFound(
                        f"Bucket {self._bucket} does not exist at {self.endpoint}.",
                        hint=_NO_BUCKET_HINT,
                    ) from None
                raise
        return False

    def head(self, key: str) -> ObjectInfo:
        with self._translated("read", key):
            r = self._client.head_object(Bucket=self._bucket, Key=key)
        return ObjectInfo(
            key=key,
            size=int(r.get("ContentLength", 0)),
            etag=str(r.get("ETag", "")).strip('"'),
            last_modified=r.get("LastModified"),
            content_type=r.get("ContentType"),
            metadata=dict(r.get("Metadata", {})),
        )

    def put_file(
        self,
        key: str,
        path: str | Path,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        on_progress: ProgressCallback | None = None,
        if_absent: bool = False,
    ) -> bool:
        try:
            total = os.path.getsize(path)
        except OSError as exc:
            raise InvalidInput(f"Cannot read {path}: {exc.strerror}.") from None
        extra = _extra_args(content_type, metadata)
        callback = ProgressCounter(on_progress, total) if on_progress else None
        if total < self._transfer.multipart_threshold:
            # One PutObject: the transfer manager's worker threads and futures cost more
            # than sending a single-part body (a typical source is a few KB).
            if if_absent:
                extra["IfNoneMatch"] = "*"  # S3 answers 412 when the key exists
            try:
                with self._translated("upload", key), open(path, "rb") as body:
                    self._client.put_object(Bucket=self._bucket, Key=key, Body=body, **extra)
            except Conflict:
                if if_absent:
                    return False
                raise
            if callback is not None:
                callback.finish()
            return True
        if if_absent and self.exists(key):  # not worth sending the parts to learn it
            return False
        with self._translated("upload", key):
            self._client.upload_file(
                str(path),
                self._bucket,
                key,
                ExtraArgs=extra or None,
                Callback=callback,
                Config=self._transfer,
            )
        if callback is not None:
            callback.finish()
        return True

    def get_file(
        self, key: str, path: str | Path, *, on_progress: ProgressCallback | None = None
    ) -> None:
        target = Path(path)
        callback = ProgressCounter(on_progress, self.head(key).size) if on_progress else None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        except OSError as exc:
            raise InvalidInput(f"Cannot write {target}: {exc.strerror}.") from None
        os.close(fd)
        try:
            with self._translated("download", key):
                self._client.download_file(
                    self._bucket, key, tmp, Callback=callback, Config=self._transfer
                )
            os.replace(tmp, target)  # whole file or nothing at `path`
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if callback is not None:
            callback.finish()

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        extra = _extra_args(content_type, metadata)
        with self._translated("upload", key):
            self._client.put_object(Bucket=self._bucket, Key=key, Body=data, **extra)

    def get_bytes(self, key: str) -> bytes:
        with self._translated("read", key):
            r = self._client.get_object(Bucket=self._bucket, Key=key)
            return r["Body"].read()

    def copy(self, source: str, dest: str, *, if_match: str | None = None) -> ObjectInfo:
        # One CopyObject: the store copies server-side (objects up to 5 GB, which a slug
        # under the source limit is); metadata and content type go with the bytes.
        extra: dict[str, str] = {"CopySourceIfMatch": f'"{if_match}"'} if if_match else {}
        with self._translated("copy", source):
            r = self._client.copy_object(
                Bucket=self._bucket,
                Key=dest,
                CopySource={"Bucket": self._bucket, "Key": source},
                **extra,  # type: ignore[arg-type]
            )
        result = r.get("CopyObjectResult", {})
        return ObjectInfo(
            key=dest,
            size=-1,  # CopyObject does not say; head() does
            etag=str(result.get("ETag", "")).strip('"'),
            last_modified=result.get("LastModified"),
        )

    def delete(self, key: str) -> None:
        with self._translated("delete", key):
            self._client.delete_object(Bucket=self._bucket, Key=key)

    def list_prefix(self, prefix: str) -> list[ObjectInfo]:
        out: list[ObjectInfo] = []
        with self._translated("list", prefix):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=prefix, PaginationConfig={"PageSize": _BATCH_KEYS}
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    out.append(
                        ObjectInfo(
                            key=obj["Key"],
                            size=int(obj.get("Size", 0)),
                            etag=str(obj.get("ETag", "")).strip('"'),
                            last_modified=obj.get("LastModified"),
                        )
                    )
        return sorted(out, key=lambda o: o.key)

    def delete_prefix(self, prefix: str) -> int:
        keys = [o.key for o in self.list_prefix(prefix)]
        for start in range(0, len(keys), _BATCH_KEYS):
            batch = keys[start : start + _BATCH_KEYS]
            with self._translated("delete", prefix):
                r = self._client.delete_objects(
                    Bucket=self._bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            errors = r.get("Errors", [])
            if errors:
                first = errors[0]
                raise NomadPaasError(
                    f"S3 at {self.endpoint} refused to delete {len(errors)} objects under "
                    f"{prefix!r}, e.g. {first.get('Key')}: {first.get('Code')} "
                    f"{first.get('Message', '')}".rstrip(),
                    hint=_CREDENTIAL_HINT,
                )
        return len(keys)

    # -- presigned URLs ---------------------------------------------------------------

    def presign_get(self, key: str, expires_s: int = DEFAULT_PRESIGN_EXPIRY_S) -> str:
        fast = self._presign_fast("GET", key, expires_s)
        if fast is not None:
            return fast
        with self._translated("presign", key):
            return self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=expires_s
            )

    def presign_put(
        self,
        key: str,
        expires_s: int = DEFAULT_PRESIGN_EXPIRY_S,
        *,
        content_type: str | None = None,
    ) -> str:
        if not content_type:  # a content type is a signed header: botocore signs it
            fast = self._presign_fast("PUT", key, expires_s)
            if fast is not None:
                return fast
        params: dict[str, str] = {"Bucket": self._bucket, "Key": key}
        if content_type:
            params["ContentType"] = content_type
        with self._translated("presign", key):
            return self._client.generate_presigned_url(
                "put_object", Params=params, ExpiresIn=expires_s
            )

    def _presign_fast(self, method: str, key: str, expires_s: int) -> str | None:
        """The URL `generate_presigned_url` would give, signed by `PathStylePresigner`;
        None where that does not apply (AWS itself, no credentials: botocore decides)."""
        if self._presigner is None or self._credentials is None:
            return None
        with self._translated("presign", key):
            frozen = self._credentials.get_frozen_credentials()  # refreshed if expiring
        if not frozen.access_key or not frozen.secret_key:
            return None
        return self._presigner.presign(
            method, self._bucket, key, expires_s,
            access_key=frozen.access_key, secret_key=frozen.secret_key, token=frozen.token,
        )  # fmt: skip

    def _translated(self, action: str, key: str) -> contextlib.AbstractContextManager[None]:
        return _translated(
            self.endpoint, f"{action} s3://{self._bucket}/{key}", bucket=self._bucket, key=key
        )


def _extra_args(content_type: str | None, metadata: Mapping[str, str] | None) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if content_type:
        extra["ContentType"] = content_type
    if metadata:
        extra["Metadata"] = dict(metadata)
    return extra


def _in_chain(exc: BaseException, kind: type[E]) -> E | None:
    """The first `kind` in the chain boto3 wraps errors in (cause, context, last_exception)."""
    seen: BaseException | None = exc
    for _ in range(6):  # bounded: chains are two or three deep
        if seen is None or isinstance(seen, kind):
            return seen
        seen = getattr(seen, "last_exception", None) or seen.__cause__ or seen.__context__
    return None


def _code(exc: BaseException) -> str | None:
    """The S3 error code of a ClientError, however deeply boto3 wrapped it."""
    from botocore.exceptions import ClientError

    err = _in_chain(exc, ClientError)
    return (str(err.response.get("Error", {}).get("Code", "")) or None) if err else None


def _status(exc: BaseException) -> int:
    from botocore.exceptions import ClientError

    err = _in_chain(exc, ClientError)
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)) if err else 0


@contextlib.contextmanager
def _translated(
    endpoint: str, what: str, *, bucket: str | None = None, key: str | None = None
) -> Iterator[None]:
    """Run a boto3 call; re-raise any failure as a typed nomadpaas error."""
    try:
        yield
    except NomadPaasError:
        raise
    except Exception as exc:
        _raise_typed(exc, endpoint, what, bucket=bucket, key=key)


def _raise_typed(
    exc: Exception, endpoint: str, what: str, *, bucket: str | None, key: str | None
) -> NoReturn:
    from botocore import exceptions as bce

    unreachable_hint = (
        f"Is the S3 server at {endpoint} running? Start the embedded stack with "
        "`nomadpaas up`, or set NOMADPAAS_S3_ENDPOINT."
    )
    from botocore.exceptions import BotoCoreError

    cause: BaseException = _in_chain(exc, BotoCoreError) or exc
    if isinstance(cause, bce.ConnectionError | bce.HTTPClientError | ConnectionError):
        raise StorageUnreachable(
            f"Cannot reach S3 at {endpoint} to {what}: {_one_line(cause)}.",
            hint=unreachable_hint,
        ) from None
    if isinstance(cause, bce.NoCredentialsError | bce.PartialCredentialsError):
        raise StorageUnreachable(
            f"No usable AWS credentials to {what} at {endpoint}: {_one_line(cause)}.",
            hint=_CREDENTIAL_HINT,
        ) from None
    if isinstance(cause, bce.ProfileNotFound | bce.CredentialRetrievalError):
        raise StorageUnreachable(
            f"Cannot load AWS credentials for S3 at {endpoint}: {_one_line(cause)}.",
            hint=_CREDENTIAL_HINT,
        ) from None
    code, status = _code(exc), _status(exc)
    if code == "NoSuchBucket":
        raise NotFound(
            f"Bucket {bucket} does not exist at {endpoint}.",
            hint=_NO_BUCKET_HINT,
        ) from None
    if code in _NOT_FOUND_CODES:
        target = f"s3://{bucket}/{key}" if key is not None else f"bucket {bucket}"
        raise NotFound(f"{target} does not exist at {endpoint}.") from None
    if code == "PreconditionFailed":
        raise Conflict(
            f"S3 at {endpoint} refused to {what}: the object changed (PreconditionFailed)."
        ) from None
    if code in _CREDENTIAL_CODES:
        raise StorageUnreachable(
            f"S3 at {endpoint} refused the credentials to {what} ({code}).",
            hint=_CREDENTIAL_HINT,
        ) from None
    if code in _DENIED_CODES:
        raise PermissionDenied(
            f"S3 at {endpoint} denied access to {what} ({code}).", hint=_CREDENTIAL_HINT
        ) from None
    if status >= 500:
        raise StorageUnreachable(
            f"S3 at {endpoint} failed to {what}: HTTP {status} {code or ''}".rstrip() + ".",
            hint=unreachable_hint,
        ) from None
    raise NomadPaasError(f"S3 at {endpoint} failed to {what}: {_one_line(cause)}.") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__
