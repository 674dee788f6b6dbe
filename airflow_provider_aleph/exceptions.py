"""Typed errors raised by the Segmind hook; each carries the request id, HTTP status and API detail."""

from __future__ import annotations

RETENTION_HINT = (
    "Segmind keeps a request's status and result for 1 hour after it finishes; copy outputs out before then."
)


class SegmindError(Exception):
    """Base class of every error the provider raises about the Segmind API.

    :param message: what went wrong, in words for the task log.
    :param status_code: the HTTP status of the answer, if there was one.
    :param detail: the API's own ``error`` text, if it sent one.
    :param request_id: the Segmind request id concerned, if known.
    :param conn_id: the Airflow connection id used.
    """

    #: Whether a new attempt at the same call may succeed (429, 5xx, network).
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        detail: str | None = None,
        request_id: str | None = None,
        conn_id: str | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.detail = detail
        self.request_id = request_id
        self.conn_id = conn_id
        super().__init__(message)

    def __str__(self) -> str:
        parts = [self.message]
        if self.detail and self.detail not in self.message:
            parts.append(f"API detail: {self.detail}")
        if self.status_code is not None:
            parts.append(f"HTTP {self.status_code}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        if self.conn_id:
            parts.append(f"conn_id={self.conn_id}")
        return " | ".join(parts)


class SegmindConfigError(SegmindError):
    """The Airflow connection cannot be used as it is (no API key, bad base URL)."""


class SegmindBadRequest(SegmindError):
    """HTTP 400: the API refused the parameters."""


class SegmindAuthError(SegmindError):
    """HTTP 401/403: the API key is missing, wrong, or lacks permission."""


class SegmindNotFound(SegmindError):
    """HTTP 404: the model, endpoint or request id is unknown, or the request expired."""


class SegmindNotAcceptable(SegmindError):
    """HTTP 406: not enough credits, or a request body the API does not accept.

    :param insufficient_credits: True when the detail says the account is out of credits.
    """

    def __init__(self, message: str, *, insufficient_credits: bool, **kwargs: object) -> None:
        self.insufficient_credits = insufficient_credits
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class SegmindModelRetired(SegmindError):
    """HTTP 410: the model was retired."""


class SegmindRateLimited(SegmindError):
    """HTTP 429: the account's rate limit was reached.

    :param retry_after: seconds the API asked us to wait, if it said.
    """

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class SegmindServerError(SegmindError):
    """HTTP 5xx on a read: the service is having trouble; another attempt may work."""

    retryable = True


class SegmindTransportError(SegmindError):
    """The network failed (refused, reset, timed out) before an answer arrived.

    :param sent: False only when the request surely never left (the connection did not open).
    """

    retryable = True

    def __init__(self, message: str, *, sent: bool, **kwargs: object) -> None:
        self.sent = sent
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class SegmindSubmitOutcomeUnknown(SegmindError):
    """A submit was sent but its answer was lost: a paid job may or may not exist.

    Never retried: the API has no idempotency key, so a second POST could pay twice.
    """

    #: What the user checks and does, the same whichever way the answer was lost.
    GUIDANCE = (
        "Segmind may have created and billed a job. It was not resubmitted, to avoid paying twice. Check the "
        "Segmind dashboard's request history; clear the task to submit again if no job exists"
    )

    @classmethod
    def after(cls, what: str, cause: str, conn_id: str) -> SegmindSubmitOutcomeUnknown:
        """The error for the submit ``what`` whose answer was lost (``cause``) after it was sent."""
        return cls(
            f"The outcome of {what} is unknown ({cause} after the request was sent): {cls.GUIDANCE}", conn_id=conn_id
        )

    @classmethod
    def interrupted(cls, attempted_at: str, conn_id: str, *, other_parameters: bool) -> SegmindSubmitOutcomeUnknown:
        """The error for a new try that finds an earlier try's submit begun (at ``attempted_at``) but never
        answered: that try ended (a worker lost, a process killed) before it could record a request id.

        :param attempted_at: ISO-8601 time the earlier try began the submit.
        :param conn_id: the Airflow connection id.
        :param other_parameters: whether the earlier submit carried other parameters than this try's.
        """
        changed = " with other parameters than this try's" if other_parameters else ""
        return cls(
            f"The outcome of the submit an earlier try of this task began at {attempted_at}{changed} is unknown "
            f"(that try ended before Segmind's answer was recorded): {cls.GUIDANCE}",
            conn_id=conn_id,
        )


class SegmindProtocolError(SegmindError):
    """The API answered with a body this provider cannot read."""


class SegmindUnreadableAnswer(SegmindProtocolError):
    """A status or result read answered 2xx with a body that is not JSON or names no status.

    Read like a gateway hiccup (another attempt usually answers properly): retried like a 5xx.
    """

    retryable = True


class SegmindRequestFailed(SegmindError):
    """The request ended in a failed state (FAILED, including content/safety blocks).

    :param retryable: whether an Airflow retry (a new, billed job) may succeed; from the state table.
    """

    def __init__(self, message: str, *, retryable: bool = False, **kwargs: object) -> None:
        self.retryable = retryable
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class SegmindUnavailable(SegmindError):
    """The API kept failing a read of a running request for longer than the connection's outage tolerance.

    The job itself may be fine and still billed: a later try (reattach) or the sensor can pick it up.
    """

    retryable = True


class SegmindWaitTimeout(SegmindError):
    """The deadline passed while the request was still running; the job may still finish."""

    retryable = True


class SegmindRequestExpired(SegmindNotFound):
    """A known request id answered 404: its 1-hour retention has passed."""


class InvalidParameter(ValueError):
    """A job parameter that cannot be sent; the message names the parameter and what is allowed.

    Raised before anything is spent. Not a :class:`SegmindError`: the API was never asked.

    :param parameter: the parameter's name.
    :param message: what is wrong and what is allowed.
    :param retryable: whether another attempt may pass (the input's host or store had a transient
        failure: network, 5xx, throttling); a wrong value never is.
    """

    def __init__(self, parameter: str, message: str, *, retryable: bool = False) -> None:
        self.parameter = parameter
        self.retryable = retryable
        super().__init__(f"Invalid parameter {parameter!r}: {message}")


def nothing_created(err: BaseException) -> bool:
    """Whether a failed submit surely created no job: the API refused it (4xx, a 429 retried out), the
    connection never opened, or the connection could not be used. Anything else may have made one.

    :param err: what the submit raised.
    """
    if isinstance(err, SegmindTransportError):
        return not err.sent
    if isinstance(err, SegmindSubmitOutcomeUnknown | SegmindProtocolError):
        return False  # sent, and answered 5xx, not at all, or 2xx with a body we cannot read
    if isinstance(err, SegmindConfigError):
        return True  # raised before anything is sent
    return isinstance(err, SegmindError) and err.status_code is not None and 400 <= err.status_code < 500
