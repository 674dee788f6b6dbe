"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_aleph import __version__

# The connection form: shared by provider info (Airflow 3.2+) and the hook classmethod (3.0-3.1).
SEGMIND_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "login", "port", "extra"],
    "relabeling": {"password": "API key", "host": "Base URL"},
    "placeholders": {
        "password": "your Segmind API key (empty: SEGMIND_API_KEY from the environment)",
        "host": "https://api.segmind.com",
        "upload_url": "https://workflows-api.segmind.com",
        "timeout": "30",
        "max_requests_per_minute": "40",
        "max_consecutive_failures": "6",
    },
}

SEGMIND_CONN_FIELDS: dict[str, Any] = {
    "upload_url": {
        "label": "Files API URL",
        "schema": {"type": ["string", "null"]},
        "description": "Base URL of Segmind's files API, for inputs it cannot fetch itself",
    },
    "timeout": {
        "label": "HTTP timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 30},
        "description": "Seconds allowed for each HTTP call to Segmind",
    },
    "max_requests_per_minute": {
        "label": "Request budget per minute",
        "schema": {"type": ["number", "null"], "default": 40},
        "description": "API calls per minute shared by all waits on this connection in one triggerer (or worker) "
        "process; split your plan's limit across processes",
    },
    "max_consecutive_failures": {
        "label": "Consecutive failures allowed",
        "schema": {"type": ["integer", "null"], "default": 6},
        "description": "Attempts of one API call (429, 5xx, network errors) before the wait fails",
    },
}


def get_provider_info() -> dict[str, Any]:
    """Describe this provider to Airflow."""
    return {
        "package-name": "airflow-provider-aleph",
        "name": "Segmind (Runway Gen4 Aleph)",
        "description": "Run Segmind's Runway Gen4 Aleph video editing and any Segmind v2 model from Airflow.",
        "versions": [__version__],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_aleph.hooks.segmind.SegmindHook",
                "hook-name": "Segmind",
                "connection-type": "segmind",
                "conn-fields": SEGMIND_CONN_FIELDS,
                "ui-field-behaviour": SEGMIND_UI_FIELD_BEHAVIOUR,
            }
        ],
        "hooks": [
            {
                "integration-name": "Segmind",
                "python-modules": ["airflow_provider_aleph.hooks.segmind"],
            }
        ],
        "operators": [
            {
                "integration-name": "Segmind",
                "python-modules": [
                    "airflow_provider_aleph.operators.segmind",
                    "airflow_provider_aleph.operators.aleph",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "Segmind",
                "python-modules": ["airflow_provider_aleph.sensors.segmind"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Segmind",
                "python-modules": ["airflow_provider_aleph.triggers.segmind"],
            }
        ],
        "extra-links": ["airflow_provider_aleph.links.SegmindOutputLink"],
        "integrations": [
            {
                "integration-name": "Segmind",
                "external-doc-url": "https://www.segmind.com/models/runway-gen4-aleph",
                "tags": ["software"],
            }
        ],
    }
