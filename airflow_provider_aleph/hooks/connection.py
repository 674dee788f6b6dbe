"""The Segmind connection's settings: every extra, its default, its parsing, its error and its form field.

This is the one home of a connection setting. The hook reads the connection through
:func:`read_connection_params`; the retry policy's default attempts, the request budget's default rate
and the connection form (provider info for Airflow 3.2+, the hook's classmethods for 3.0-3.1) all come
from :data:`EXTRAS`. Adding a setting is a row there and a field of :class:`ConnectionParams`.

Nothing here imports Airflow at module level: provider info imports this module while Airflow loads.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_aleph.exceptions import SegmindAuthError, SegmindConfigError, SegmindNotFound
from airflow_provider_aleph.protocol import (
    DEFAULT_BASE_URL,
    DEFAULT_UPLOAD_URL,
    error_from_response,
    normalize_base_url,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import httpx

    from airflow_provider_aleph.protocol import RequestSpec

API_KEY_ENV = "SEGMIND_API_KEY"
DEFAULT_TIMEOUT = 30.0
#: Segmind's plans allow about 5 requests a minute (Free) and 50 (Pro). 40 keeps a Pro account
#: a fifth under its limit, leaving room for submits from workers and for a person's own calls;
#: a Free account must lower it (extra ``max_requests_per_minute``), or its polls draw 429s.
DEFAULT_MAX_REQUESTS_PER_MINUTE = 40.0
#: Attempts of one submit or upload (a 429, a connection that never opened; an upload also on 5xx and
#: network errors) before it fails. Polls of a running job are not counted: see the outage tolerance.
DEFAULT_MAX_CONSECUTIVE_FAILURES = 6
#: How long the polls of a paid, running job ride out an API that keeps failing (5xx, dropped or refused
#: connections, read timeouts) before the task fails: minutes, so an outage does not abandon the job.
#: 429s never count: they are flow control.
DEFAULT_OUTAGE_TOLERANCE = 15 * 60.0
#: A connection held for a long time (by a triggerer's waits, a sensor) is read again at least this
#: often, and at once when the API rejects its key, so a rotated key takes effect without a restart.
REREAD_SECONDS = 5 * 60.0


def _url(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(raw)
    return normalize_base_url(raw)


def _positive(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError(raw)
    value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(raw)
    return value


def _whole_from_one(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError(raw)
    if isinstance(raw, str):
        if not raw.strip().isdigit():
            raise ValueError(raw)
        value = int(raw.strip())
    elif isinstance(raw, int):
        value = raw
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    else:
        raise ValueError(raw)
    if value < 1:
        raise ValueError(raw)
    return value


#: How the polls of waiting requests are spaced (see :mod:`airflow_provider_aleph.polling`).
POLL_POLICIES = ("adaptive", "fixed")
DEFAULT_POLL_POLICY = "adaptive"


def _poll_policy(raw: Any) -> str:
    if not isinstance(raw, str) or raw.strip().lower() not in POLL_POLICIES:
        raise ValueError(raw)
    return raw.strip().lower()


@dataclass(frozen=True)
class Extra:
    """One connection extra.

    :param label: the form field's label.
    :param description: the form field's help text.
    :param default: the value when the extra is absent or empty.
    :param allowed: what a value must be, for the error message.
    :param parse: turns a given value into the setting; raises ValueError or TypeError for a bad one.
    :param json_type: the JSON schema type of the form field.
    """

    label: str
    description: str
    default: Any
    allowed: str
    parse: Callable[[Any], Any]
    json_type: str

    def read(self, name: str, extra: Mapping[str, Any], conn_id: str) -> Any:
        """The setting from a connection's extra, or its default; a bad value is a SegmindConfigError.

        :param name: the extra's key.
        :param extra: the connection's extra, as a dict.
        :param conn_id: the connection id, named in the error.
        """
        raw = extra.get(name)
        if raw is None or raw == "":
            return self.default
        try:
            return self.parse(raw)
        except (TypeError, ValueError):
            raise SegmindConfigError(
                f"Connection {conn_id!r}: extra {name!r} must be {self.allowed}, got {raw!r}", conn_id=conn_id
            ) from None


EXTRAS: Mapping[str, Extra] = {
    "upload_url": Extra(
        label="Files API URL",
        description="Base URL of Segmind's files API, for inputs it cannot fetch itself",
        default=DEFAULT_UPLOAD_URL,
        allowed="a URL such as https://workflows-api.segmind.com",
        parse=_url,
        json_type="string",
    ),
    "timeout": Extra(
        label="HTTP timeout (seconds)",
        description="Seconds allowed for each HTTP call to Segmind",
        default=DEFAULT_TIMEOUT,
        allowed="a positive number of seconds",
        parse=_positive,
        json_type="number",
    ),
    "max_requests_per_minute": Extra(
        label="Request budget per minute",
        description="API calls per minute shared by all waits on this connection in one triggerer (or worker) "
        "process; split your plan's limit across processes",
        default=DEFAULT_MAX_REQUESTS_PER_MINUTE,
        allowed="a positive number of API calls per minute for this triggerer process, e.g. 40",
        parse=_positive,
        json_type="number",
    ),
    "max_consecutive_failures": Extra(
        label="Submit and upload attempts",
        description="Attempts of one submit or upload before it fails (a submit is retried only when nothing "
        "can have been created); the polls of a running job use the outage tolerance instead",
        default=DEFAULT_MAX_CONSECUTIVE_FAILURES,
        allowed="a whole number of attempts, 1 or more (1 means no retry), e.g. 6",
        parse=_whole_from_one,
        json_type="integer",
    ),
    "outage_tolerance": Extra(
        label="Outage tolerance (seconds)",
        description="How long the polls of a running (paid) job keep retrying 5xx answers, dropped or refused "
        "connections and timeouts before the task fails; 429s never count",
        default=DEFAULT_OUTAGE_TOLERANCE,
        allowed="a positive number of seconds, e.g. 900",
        parse=_positive,
        json_type="number",
    ),
    "poll_policy": Extra(
        label="Poll policy",
        description="adaptive: poll each job when it is likely done, learning job durations, and slow down on "
        "429 (default); fixed: poll every job at its poll interval, stretched to fit the request budget",
        default=DEFAULT_POLL_POLICY,
        allowed="'adaptive' or 'fixed'",
        parse=_poll_policy,
        json_type="string",
    ),
}


def read_extra(extra: Mapping[str, Any], name: str, conn_id: str) -> Any:
    """One setting of a connection's extra (see :data:`EXTRAS`), checked.

    :param extra: the connection's extra, as a dict.
    :param name: the extra's key.
    :param conn_id: the connection id, named in the error.
    """
    return EXTRAS[name].read(name, extra, conn_id)


def form_fields() -> dict[str, Any]:
    """The connection form's extra fields, as provider info's ``conn-fields`` spells them."""
    return {
        name: {
            "label": spec.label,
            "schema": {"type": [spec.json_type, "null"], "default": spec.default},
            "description": spec.description,
        }
        for name, spec in EXTRAS.items()
    }


def form_placeholders() -> dict[str, str]:
    """Placeholders of the connection form: the defaults, shown where a field is empty."""
    return {
        "password": f"your Segmind API key (empty: {API_KEY_ENV} from the environment)",
        "host": DEFAULT_BASE_URL,
        **{
            name: f"{spec.default:g}" if isinstance(spec.default, float) else str(spec.default)
            for name, spec in EXTRAS.items()
        },
    }


def ui_field_behaviour() -> dict[str, Any]:
    """The form's behaviour as the hook classmethod of Airflow 3.0-3.1 spells it (``hidden_fields``)."""
    from airflow_provider_aleph.get_provider_info import SEGMIND_UI_FIELD_BEHAVIOUR

    return {key.replace("-", "_"): value for key, value in SEGMIND_UI_FIELD_BEHAVIOUR.items()}


def form_widgets() -> dict[str, Any]:
    """The extra fields as Flask form widgets, for Airflow 3.0-3.1 (needs the FAB provider there)."""
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import StringField

    return {
        name: StringField(lazy_gettext(spec.label), widget=BS3TextFieldWidget(), description=spec.description)
        for name, spec in EXTRAS.items()
    }


@dataclass(frozen=True)
class ConnectionParams:
    """What the hook needs from an Airflow connection; ``repr`` never shows the key.

    :param base_url: API base URL with scheme, e.g. ``https://api.segmind.com``.
    :param upload_url: files API base URL (extra ``upload_url``).
    :param timeout: seconds allowed per HTTP call (extra ``timeout``).
    :param api_key: the Segmind API key.
    :param max_requests_per_minute: API calls per minute that the waits of this connection in one
        process may make together (extra ``max_requests_per_minute``).
    :param max_consecutive_failures: attempts of a submit or upload before it fails (extra
        ``max_consecutive_failures``).
    :param outage_tolerance: seconds the polls of a running job ride out a failing API before the
        task fails (extra ``outage_tolerance``); 429s never count.
    :param poll_policy: how the polls of waiting requests are spaced: ``adaptive`` or ``fixed``
        (extra ``poll_policy``).
    """

    base_url: str
    upload_url: str
    timeout: float
    api_key: str = field(repr=False)
    max_requests_per_minute: float = DEFAULT_MAX_REQUESTS_PER_MINUTE
    max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES
    outage_tolerance: float = DEFAULT_OUTAGE_TOLERANCE
    poll_policy: str = DEFAULT_POLL_POLICY


def read_connection_params(conn: Any, extra: Mapping[str, Any], conn_id: str) -> ConnectionParams:
    """Check and read a connection of type ``segmind``.

    :param conn: the Airflow connection (password = API key, host = API base URL).
    :param extra: its extra, as a dict.
    :param conn_id: its id, named in errors.
    :raises SegmindConfigError: no API key, or an extra with a value that is not allowed.
    """
    api_key = (conn.password or os.environ.get(API_KEY_ENV) or "").strip()
    if not api_key:
        raise SegmindConfigError(
            f"Connection {conn_id!r} has no API key: set its password, or {API_KEY_ENV} in the environment",
            conn_id=conn_id,
        )
    if not conn.password:
        from airflow.providers.common.compat.sdk import mask_secret

        # Airflow masks a connection's password itself; a key from the environment it does not know.
        mask_secret(api_key)
    host = conn.host or DEFAULT_BASE_URL
    if "://" not in host and conn.port:
        host = f"{host}:{conn.port}"
    settings = {name: read_extra(extra, name, conn_id) for name in EXTRAS}
    return ConnectionParams(base_url=normalize_base_url(host), api_key=api_key, **settings)


# -- the connection test ----------------------------------------------------------------------------

#: The key the connection test's second probe sends: no account has it, so a server that checks keys
#: on the status route refuses it. Not a secret.
CONTROL_KEY = "airflow-provider-aleph-connection-test-not-a-key"


def judge_key_probe(
    send: Callable[[str], httpx.Response], spec: RequestSpec, params: ConnectionParams
) -> tuple[bool, str]:
    """The connection test's verdict, from the status of a random, well-formed request id.

    A 404 proves nothing by itself: a server may look at the id (its form, or whether it exists) before
    the key, and then answers 404 to any key. So a 404 that names a request is followed by the same
    call with :data:`CONTROL_KEY`: only when that one is refused did the server check keys there, and
    ours passed. A 404 that names no request (a routing error page) means the host serves no Segmind
    status route. Never reports success unless a wrong key was seen refused.

    :param send: sends ``spec`` with the given key, without retries, and returns the answer.
    :param spec: the status call of a random UUID.
    :param params: the connection's settings (its key is sent first).
    """
    answer = send(params.api_key)
    if answer.is_success:
        return False, f"{params.base_url} answered a status for a random request id; is it a Segmind API?"
    err = error_from_response(answer, spec)
    if isinstance(err, SegmindAuthError):
        return False, f"Segmind at {params.base_url} rejected the API key (HTTP {err.status_code})"
    if not isinstance(err, SegmindNotFound):
        return False, str(err)
    if "request" not in (err.detail or "").lower():
        shown = f"answered {err.detail!r}" if err.detail else "answered without a Segmind error body"
        return False, (
            f"{params.base_url} has no Segmind status route: {spec.describe()} {shown} (HTTP 404, naming "
            "no request); check the connection's host"
        )
    control = send(CONTROL_KEY)
    if control.status_code in (401, 403):
        return True, f"Connection works: Segmind at {params.base_url} accepted the API key (and refused a wrong one)"
    return False, (
        f"The API key could not be verified: {params.base_url} answers an unknown request id the same way "
        f"(HTTP {control.status_code}) whatever the key, so its answer says nothing about the key. A job "
        "submitted with this connection will tell (and costs credits)"
    )
