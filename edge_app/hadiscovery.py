"""Home Assistant's MQTT discovery configs for one classifier: what makes its entities appear in Home Assistant.

Each config is published retained on homeassistant/<component>/<node_id>/<object_id>/config (Home Assistant
reads them at its own start and whenever one arrives), with a unique_id, the device block that groups the
entities under one device, and the availability topic that greys them out while the classifier is offline.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from edgeclf.edge_app import __version__
from edgeclf.edge_app.errors import EdgeClfError
from edgeclf.edge_app.mqttopts import MqttSettings, sanitise

DISCOVERY_PREFIX = "homeassistant"


def config_topic(component: str, node_id: str, object_id: str) -> str:
    """homeassistant/<component>/<node_id>/<object_id>/config, the IDs limited to [A-Za-z0-9_-]."""
    return f"{DISCOVERY_PREFIX}/{component}/{sanitise(node_id)}/{sanitise(object_id)}/config"


def object_id(label: str) -> str:
    """The binary sensor's object id of `label`: label_<label> when that is already [A-Za-z0-9_-], otherwise the
    sanitised label and a hash of the label itself, so that 'traffic light' and 'traffic_light', or '猫' and '犬'
    (both nothing once sanitised), stay two entities, and a label keeps its id whatever else is listed."""
    clean = sanitise(label)
    if clean == label:
        return f"label_{label}"
    digest = hashlib.sha256(label.encode()).hexdigest()[:8]
    return f"label_{digest}" if clean == "_" else f"label_{clean}_{digest}"


def check_labels(wanted: Sequence[str], labels: Sequence[str], model: str) -> None:
    """EdgeClfError when --ha-labels names a label the model does not have (its sensor would never be on), one
    twice, or two whose entities would be one."""
    unknown = [name for name in wanted if name not in labels]
    if unknown:
        raise EdgeClfError(
            f"--ha-labels: {', '.join(map(repr, unknown))} not among the labels of {model} ({', '.join(labels)})"
        )
    twice = next((name for i, name in enumerate(wanted) if name in wanted[:i]), None)
    if twice is not None:
        raise EdgeClfError(f"--ha-labels: {twice!r} is given twice")
    owner: dict[str, str] = {}  # object id -> the label that has it
    for name in wanted:
        key = object_id(name)
        if key in owner:
            entity = f"would be the same Home Assistant entity ({key})"
            raise EdgeClfError(f"--ha-labels: {owner[key]!r} and {name!r} {entity}")
        owner[key] = name


def _jinja_string(text: str) -> str:
    """`text` as a Jinja string literal: JSON's escapes are Jinja's too, so a quote in a label stays text."""
    return json.dumps(text)


def configs(settings: MqttSettings, model: str) -> list[tuple[str, dict[str, Any]]]:
    """(topic, config) for each entity: the label and score sensors, a binary sensor per --ha-labels label
    and, with --mqtt-snapshot, the camera that shows the snapshots."""
    node = settings.node_id
    state, availability = settings.topic("state"), settings.topic("availability")
    common = {
        "availability_topic": availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {
            "identifiers": [node],
            "name": f"edgeclf {settings.prefix.rsplit('/', 1)[-1]}",
            "manufacturer": "edgeclf",
            "model": model,
            "sw_version": __version__,
        },
        "origin": {"name": "edgeclf", "sw_version": __version__},
    }
    entities: list[tuple[str, str, dict[str, Any]]] = [
        (
            "sensor",
            "label",
            {
                "name": "Label",
                "state_topic": state,
                "value_template": "{{ value_json.label }}",
                "json_attributes_topic": state,
                "json_attributes_template": "{{ {'top': value_json.top, 'time': value_json.time} | tojson }}",
                "icon": "mdi:image-search",
            },
        ),
        (
            "sensor",
            "score",
            {
                "name": "Score",
                "state_topic": state,
                "value_template": "{{ (value_json.score * 100) | round(1) }}",
                "unit_of_measurement": "%",
                "state_class": "measurement",
                "icon": "mdi:percent",
            },
        ),
    ]
    for label in settings.ha_labels:
        entities.append(
            (
                "binary_sensor",
                object_id(label),
                {
                    "name": label,
                    "state_topic": state,
                    "value_template": f"{{{{ 'ON' if value_json.label == {_jinja_string(label)} else 'OFF' }}}}",
                    "payload_on": "ON",
                    "payload_off": "OFF",
                    "icon": "mdi:eye",
                },
            )
        )
    if settings.snapshot:
        entities.append(("camera", "snapshot", {"name": "Snapshot", "topic": settings.topic("snapshot")}))
    out = []
    for component, entity_id, entity in entities:
        body = {**entity, "unique_id": f"{node}_{sanitise(entity_id)}", **common}
        out.append((config_topic(component, node, entity_id), body))
    return out
