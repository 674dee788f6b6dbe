"""Offline emulator of Segmind's v2 async API, for tests, demos and DAG authors' CI.

``with Emulator() as emu:`` serves the API on a free loopback port at ``emu.base_url``; point
the provider's connection (host, and extra ``upload_url`` for the files API) or
``segmind.SegmindClient(base_url=f"{emu.base_url}/v1")`` at it. A prompt containing
``[emulator:fail]`` always ends FAILED; see ``jobs`` for the job timeline. Run it standalone with
``python -m airflow_provider_aleph.emulator --port 8765`` (``--help`` lists every flag), or from
Python with ``spawn.spawn(flags)``, which returns the process and its base URL once it serves.

What it emulates beyond the happy path, each an ``Emulator(...)`` keyword, a command-line flag,
and a run-time setting (``emu.config(name=value)`` or ``POST /_emulator/config``):

- job durations that vary (``latency_sigma``): above 0, each job's duration is drawn at submit
  from a lognormal whose median is ``latency``, reproducible with ``seed`` and apart from the
  failure draws; 0 keeps every job at exactly ``latency``;
- input fetching (``fetch_inputs``, ``fetch_timeout``): each job's ``video`` / ``reference_image``
  is fetched by the emulator; a failed fetch or a video over 16 MiB fails the (paid) job with
  ``could not fetch video: ...``; the fetched video is the job's output;
- the files API (``POST /upload-asset``, ``upload_answer_key``) and public ``/assets/...``;
- large outputs (``output_size``): a generated, streamed MP4 (the sample clip, then a ``free`` box
  of a pattern per request id, to the exact size) that still decodes; check copies with
  ``emu.expected_output_sha256(request_id)`` or :func:`expected_output_sha256`;
- a visible edit (``edit_outputs``, with the ``[media]`` extra): a fetched clip comes back tinted by
  its prompt and captioned with it (see ``edit``);
- interrupted downloads (``cut_outputs``, ``cut_after_bytes``);
- injected faults (``error_rate``, reproducible with ``seed``): 429s, 5xx gateway pages and dropped
  connections; a submit only gets faults that create nothing;
- the account rate limit (``rpm_limit`` per ``rate_window`` seconds, per key), counting every API
  call (submit, status, result, upload); a refused call answers 429 and creates or stores nothing;
- keys out of credits (``insufficient_credits_keys``: 406 on submit) and a non-JSON submit (406);
- cost and an account balance (``cost_per_job``, ``credits``): each accepted submit debits its cost,
  a COMPLETED result reports ``cost`` and ``remaining_credits`` in ``metrics``, and a submit the
  balance cannot cover answers 406 and creates nothing;
- lost submit answers (``lose_submit_answers``, ``lose_submit_mode``): the job is created, then
  the answer is a 504 page or a dropped connection;
- an undocumented interim status (``interim_status``, ``interim_polls``): each job's first
  ``interim_polls`` status polls answer HTTP 200 with that status (e.g. ``STARTING``) even once the
  job is done, so the client must keep polling;
- garbled answers (``garbled_answers``): the next N status or result answers about a job are HTTP
  200 with an HTML page or JSON without ``status``, alternately, and leave the job as it was; a
  client should retry them as transient errors;
- an outage (``outage_seconds``): setting it to S starts one now that lasts S seconds (the keyword
  and ``--outage-seconds`` start one when the emulator starts); every API call (submit, status,
  result, upload) answers a 503 gateway page, before any other check, so a submit creates nothing;
  admin routes and file downloads still work; setting 0 ends it;
- a key rotation (``api_keys``; no flag, ``--api-key`` names the key at start): when not empty,
  the accepted keys instead of the emulator's own; ``emu.config(api_keys=[old, new])`` then
  ``emu.config(api_keys=[new])`` leaves the old key answering 401 on every API route, jobs it
  submitted included; ``[]`` restores the emulator's key. ``as_dict()`` reports keys by count only.

``emu.stats()`` / ``GET /_emulator/stats`` counts all of it (``interim_answers``,
``garbled_answers`` and ``outage_answers`` for the last ones, and ``outage_remaining`` seconds);
``emu.reset()`` clears the counters but keeps the settings and an outage under way.
"""

from __future__ import annotations

from airflow_provider_aleph.emulator.assets import expected_output_sha256, output_bytes_iter
from airflow_provider_aleph.emulator.config import EmulatorConfig
from airflow_provider_aleph.emulator.jobs import FAIL_MARKER, FAILURE_REASON, Job
from airflow_provider_aleph.emulator.server import Emulator

__all__ = [
    "FAILURE_REASON",
    "FAIL_MARKER",
    "Emulator",
    "EmulatorConfig",
    "Job",
    "expected_output_sha256",
    "output_bytes_iter",
]
