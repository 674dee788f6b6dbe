"""The provider as Airflow discovers it: entry point, connection type, form fields, classes."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from airflow_provider_aleph.get_provider_info import get_provider_info
from airflow_provider_aleph.hooks.segmind import SegmindHook


def test_entry_point_points_at_get_provider_info():
    (entry,) = [
        e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("airflow_provider_aleph")
    ]
    assert entry.load() is get_provider_info


def test_every_listed_module_and_class_imports():
    info = get_provider_info()
    modules = [
        m for kind in ("hooks", "operators", "sensors", "triggers") for i in info[kind] for m in i["python-modules"]
    ]
    assert len(modules) == 5
    for module in modules:
        importlib.import_module(module)
    for path in [info["connection-types"][0]["hook-class-name"], *info["extra-links"]]:
        module, _, name = path.rpartition(".")
        assert hasattr(importlib.import_module(module), name), path


def test_airflow_providers_manager_knows_the_segmind_connection_type():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-aleph" in manager.providers
    hook = manager.hooks["segmind"]
    assert hook is not None
    assert hook.hook_class_name == "airflow_provider_aleph.hooks.segmind.SegmindHook"
    assert hook.connection_id_attribute_name == "segmind_conn_id"


def test_connection_form_renders_with_our_labels_and_extra_fields():
    # Airflow 3.2+ reads the form from provider info; 3.0-3.1 call the hook's classmethods
    # (with the FAB provider's Flask pieces, which the Airflow 3.0 test leg installs).
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    behaviour = manager.field_behaviours["segmind"]
    hidden = behaviour.get("hidden_fields", behaviour.get("hidden-fields"))
    assert set(hidden) == {"schema", "login", "port", "extra"}
    assert behaviour["relabeling"] == {"password": "API key", "host": "Base URL"}
    assert behaviour["placeholders"]["host"] == "https://api.segmind.com"
    widgets = {w.field_name for k, w in manager.connection_form_widgets.items() if k.startswith("extra__segmind__")}
    assert widgets == {
        "upload_url",
        "timeout",
        "max_requests_per_minute",
        "max_consecutive_failures",
        "outage_tolerance",
        "poll_policy",
    }


def test_hook_classmethod_serves_the_same_form_to_airflow_3_0_and_3_1():
    behaviour = SegmindHook.get_ui_field_behaviour()
    declared = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
    assert behaviour == {
        "hidden_fields": declared["hidden-fields"],
        **{k: declared[k] for k in ("relabeling", "placeholders")},
    }
    assert SegmindHook.conn_type == "segmind"
    assert SegmindHook.default_conn_name == "segmind_default"


def test_the_runway_aleph_task_decorator_is_registered_and_resolves_on_task():
    from airflow.sdk import task

    from airflow_provider_aleph.decorators.aleph import runway_aleph_task

    (declared,) = get_provider_info()["task-decorators"]
    assert declared == {
        "name": "runway_aleph",
        "class-name": "airflow_provider_aleph.decorators.aleph.runway_aleph_task",
    }
    try:  # Airflow 3.3's task SDK reads provider decorators through its own runtime manager
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime as Manager
    except ImportError:
        from airflow.providers_manager import ProvidersManager as Manager  # type: ignore[assignment]
    assert Manager().taskflow_decorators["runway_aleph"] is runway_aleph_task
    assert task.runway_aleph is runway_aleph_task
