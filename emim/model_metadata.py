"""A model folder's `metadata.json`: its JSON Schema, the one validator the engine and the Slicer module both use, and
the facts that follow from a description (computed here once).

Standard library only: the Slicer module reads a model's description in its own process, which must not load torch,
and the engine checks the same schema before it reads a byte of the weights. `SCHEMA` is built from the contract's
choice lists, so a task or normalisation is named once; `model-metadata.schema.json` beside this file is `SCHEMA`
written out for other tools (a test keeps the two equal; `python -m emim.model_metadata` rewrites it). The
validator knows the JSON Schema keywords `SCHEMA` uses, and its messages are worded as the `jsonschema` package words
them. What a schema cannot say (a region's labels among the label values, safe names, pattern safety) is checked by
`emim.modelfile` after it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from emim.contract import DEFAULT_NORMALIZATION, MODEL_TASKS, NORMALIZATIONS

FORMAT = "emim-model"
FORMAT_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("model-metadata.schema.json")
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_CODE = {"type": "object", "required": ["CodingSchemeDesignator", "CodeValue", "CodeMeaning"],
         "properties": {key: {"type": "string"} for key in ("CodingSchemeDesignator", "CodeValue", "CodeMeaning")}}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://github.com/emim-slicer/SlicerEMIM/emim/model-metadata.schema.json",
    "title": "E-MIM model folder metadata.json",
    "description": "What a model folder's weights are and how to feed them (docs/engine-interface.md).",
    "type": "object",
    "required": ["format", "format_version", "engine_version", "task", "modalities", "model_config", "sha256"],
    "properties": {
        "format": {"const": FORMAT},
        "format_version": {"type": "integer", "minimum": 1},
        "engine_version": {"type": "string"},
        "task": {"enum": list(MODEL_TASKS)},
        "name": {"type": "string"},
        "description": {"type": "string"},
        "modalities": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/modality"}},
        "model_config": {"type": "object"},  # emim.config.ModelConfig checks it
        "network": {"type": "object"},
        "preprocessing": {"type": "object", "properties": {
            "normalization": {"enum": list(NORMALIZATIONS)},
            "orientation": {"const": "RAS"},
            "spacing": {"type": ["array", "null"], "minItems": 3, "maxItems": 3, "items": {"type": "number"}}}},
        "inference": {"type": "object", "properties": {
            "overlap": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
            "sw_batch_size": {"type": "integer", "minimum": 1},
            "postprocess": {"type": "object"},
            "missing_modalities": {"type": "object", "properties": {"supported": {"type": "boolean"}}}}},
        "labels": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/label"}},
        "regions": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/region"}},
        "classes": {"type": "array", "minItems": 2, "items": {"$ref": "#/$defs/class"}},
        "provenance": {"type": "object"},
        "sha256": _SHA256,
        "metadata_sha256": _SHA256,
    },
    "allOf": [{"if": {"properties": {"task": {"const": "segmentation"}}}, "then": {"required": ["labels", "regions"]}},
              {"if": {"properties": {"task": {"const": "classification"}}}, "then": {"required": ["classes"]}}],
    "$defs": {
        "modality": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "minLength": 1},
            "title": {"type": "string"},
            "patterns": {"type": ["array", "string"], "items": {"type": "string"}}}},
        "label": {"type": "object", "required": ["value", "name", "color"], "properties": {
            "value": {"type": "integer", "minimum": 1},
            "name": {"type": "string", "minLength": 1},
            "color": {"type": "array", "minItems": 3, "maxItems": 3,
                      "items": {"type": "integer", "minimum": 0, "maximum": 255}},
            "terminology": {"type": ["object", "string"], "properties": {
                key: {"$ref": "#/$defs/code"} for key in ("category", "type", "anatomicRegion")}}}},
        "region": {"type": "object", "required": ["name", "labels"], "properties": {
            "name": {"type": "string", "minLength": 1},
            "title": {"type": "string"},
            "labels": {"type": "array", "minItems": 1, "items": {"type": "integer"}}}},
        "class": {"type": "object", "required": ["value", "name"], "properties": {
            "value": {"type": "integer", "minimum": 0},
            "name": {"type": "string", "minLength": 1}}},
        "code": _CODE,
    },
}

_TYPES = {"object": dict, "array": list, "string": str, "number": (int, float), "integer": int, "boolean": bool,
          "null": type(None)}
_ANNOTATIONS = {"$schema", "$id", "$defs", "title", "description", "then"}  # "then" is read with its "if"
_KEYWORDS = _ANNOTATIONS | {"$ref", "type", "const", "enum", "required", "properties", "items", "minItems", "maxItems",
                            "minLength", "pattern", "minimum", "maximum", "exclusiveMaximum", "allOf", "if"}


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind in ("number", "integer"):
        return False
    return isinstance(value, _TYPES[kind])


def _problems(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """The messages of every keyword of `schema` that `value` breaks (recursing into properties and items)."""
    found: list[str] = []
    for keyword, rule in schema.items():
        if keyword not in _KEYWORDS:
            raise ValueError(f"the metadata schema uses {keyword!r}, which this validator does not implement")
        if keyword == "$ref":
            found += _problems(value, SCHEMA["$defs"][rule.rpartition("/")[2]], where)
        elif keyword == "type":
            kinds = rule if isinstance(rule, list) else [rule]
            if not any(_is(value, kind) for kind in kinds):
                found.append(f"{where}: {value!r} is not of type {', '.join(repr(kind) for kind in kinds)}")
                return found  # the other keywords would only repeat it
        elif keyword == "const" and value != rule:
            found.append(f"{where}: {rule!r} was expected")
        elif keyword == "enum" and value not in rule:
            found.append(f"{where}: {value!r} is not one of {rule!r}")
        elif keyword == "required" and isinstance(value, dict):
            found += [f"{where}: {key!r} is a required property" for key in rule if key not in value]
        elif keyword == "properties" and isinstance(value, dict):
            for key, sub in rule.items():
                if key in value:
                    found += _problems(value[key], sub, f"{where}.{key}")
        elif keyword == "items" and isinstance(value, list):
            for index, item in enumerate(value):
                found += _problems(item, rule, f"{where}[{index}]")
        elif keyword in ("minItems", "maxItems") and isinstance(value, list):
            if (len(value) < rule) if keyword == "minItems" else (len(value) > rule):
                found.append(f"{where}: {value!r} is too {'short' if keyword == 'minItems' else 'long'}")
        elif keyword == "minLength" and isinstance(value, str) and len(value) < rule:
            found.append(f"{where}: {value!r} is too short")
        elif keyword == "pattern" and isinstance(value, str) and not re.search(rule, value):
            found.append(f"{where}: {value!r} does not match {rule!r}")
        elif keyword in ("minimum", "maximum", "exclusiveMaximum") and _is(value, "number"):
            broken = {"minimum": value < rule, "maximum": value > rule, "exclusiveMaximum": value >= rule}[keyword]
            words = {"minimum": "less than the minimum of", "maximum": "greater than the maximum of",
                     "exclusiveMaximum": "greater than or equal to the maximum of"}[keyword]
            if broken:
                found.append(f"{where}: {value!r} is {words} {rule!r}")
        elif keyword == "allOf":
            for sub in rule:
                found += _problems(value, sub, where)
        elif keyword == "if" and not _problems(value, rule, where):
            found += _problems(value, schema.get("then", {}), where)
    return found


def schema_problems(metadata: Any) -> list[str]:
    """Where and how `metadata` breaks SCHEMA (JSON paths from `$`), or [] when it conforms."""
    return _problems(metadata, SCHEMA, "$")


def takes_missing_sequences(metadata: dict[str, Any]) -> bool:
    """Fine-tuned with modality dropout: the model segments a case that lacks some of its sequences."""
    return bool(((metadata.get("inference") or {}).get("missing_modalities") or {}).get("supported"))


def modality_dropout(metadata: dict[str, Any]) -> float:
    """The share of training batches that hid sequences (0 for a model fine-tuned without modality dropout)."""
    return float(((metadata.get("inference") or {}).get("missing_modalities") or {}).get("modality_dropout", 0.0))


def normalization(metadata: dict[str, Any]) -> str:
    """How the model's inputs are normalised (models written before the key existed used the default)."""
    return (metadata.get("preprocessing") or {}).get("normalization", DEFAULT_NORMALIZATION)


def schema_text() -> str:
    """SCHEMA as the file beside this module holds it."""
    return json.dumps(SCHEMA, indent=2) + "\n"


if __name__ == "__main__":
    SCHEMA_FILE.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")
