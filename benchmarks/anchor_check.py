"""The response check the anchor (the HTTP provider's ``HttpEventTrigger``) runs on each poll.

A module of its own: ``HttpEventTrigger`` re-imports (reloads) the module named in its
``response_check_path`` on every poll, as a user's DAG would have it.
"""

from __future__ import annotations

from typing import Any


async def status_is_completed(response: Any) -> bool:
    """Fire once Segmind's status body says COMPLETED.

    :param response: the ``requests.Response`` the trigger built from the status call.
    """
    return bool(response.json().get("status") == "COMPLETED")
