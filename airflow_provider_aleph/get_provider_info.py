"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_aleph import __version__
from airflow_provider_aleph.hooks.connection import form_fields, form_placeholders

# The connection form: shared by provider info (Airflow 3.2+) and the hook classmethods (3.0-3.1),
# built from the one table of connection settings.
SEGMIND_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "login", "port", "extra"],
    "relabeling": {"password": "API key", "host": "Base URL"},
    "placeholders": form_placeholders(),
}

SEGMIND_CONN_FIELDS: dict[str, Any] = form_fields()


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
        "task-decorators": [
            {
                "name": "runway_aleph",
                "class-name": "airflow_provider_aleph.decorators.aleph.runway_aleph_task",
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
