"""The CRD's schema documents itself: what `kubectl explain` prints (descriptions) states every
default, bound and enum the schema enforces, the README's table agrees with the schema, and no
validation rule converts a string it has not checked. Pure: reads files only."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "shardrings.shardring.io.yaml"
README = REPO / "docs" / "reference.md"  # where the spec table lives
README_TABLE_HEADER = "| field | default | meaning |"
# CEL functions that turn a string into a typed value and fail to evaluate on a malformed one
CONVERSIONS = ("duration", "timestamp", "quantity", "url", "ip", "cidr", "int", "uint", "double")
CONVERSION_CALL = re.compile(r"\b(" + "|".join(CONVERSIONS) + r")\(\s*(self(?:\.\w+)?)\s*\)")


def versions() -> list[dict[str, Any]]:
    return yaml.safe_load(CRD.read_text())["spec"]["versions"]


def spec_schema() -> dict[str, Any]:
    served = [v for v in versions() if v.get("storage")]
    return served[0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node under ``node`` (itself included), with its path."""
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*")


def every_node() -> Iterator[tuple[str, dict[str, Any]]]:
    for version in versions():
        yield from walk(version["schema"]["openAPIV3Schema"], version["name"])


def render(value: Any) -> str:
    """A value as a user writes it in YAML (and as the README and descriptions show it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def stated_facts(node: dict[str, Any]) -> str:
    """What a field's description must end with: its default (a scalar one: an object's default
    is its fields' defaults), then its bounds or its allowed values."""
    parts = []
    if "default" in node and not isinstance(node["default"], dict | list):
        parts.append(f"Default: {render(node['default'])}.")
    low, high = node.get("minimum"), node.get("maximum")
    if low is not None and high is not None:
        parts.append(f"{low} to {high}.")
    elif low is not None:
        parts.append(f"At least {low}.")
    elif high is not None:
        parts.append(f"At most {high}.")
    if "enum" in node:
        parts.append(f"One of: {', '.join(render(v) for v in node['enum'])}.")
    return " ".join(parts)


def normalized(text: str) -> str:
    return " ".join(text.split())


def stated_default(description: str) -> str | None:
    """The default a description states in words ("Default: the agent's own."), if any."""
    found = re.search(r"\bDefault: (.+?)\.(?:\s|$)", description)
    return found.group(1) if found else None


def test_every_default_bound_and_enum_ends_the_description():
    checked, problems = [], []
    for path, node in every_node():
        facts = stated_facts(node)
        if not facts:
            continue
        checked.append(path)
        description = normalized(node.get("description", ""))
        if not description.endswith(facts):
            problems.append(f"{path}: description should end with {facts!r}: {description!r}")
        if description.count("Default:") > 1:
            problems.append(f"{path}: states more than one default: {description!r}")
    assert checked, "no property with a default, bound or enum found: is the CRD read right?"
    assert not problems, "\n".join(problems)


def test_an_object_default_is_what_its_fields_default_to():
    """An object's default is not repeated in its description: its fields state it, so each of its
    entries must be that field's own default."""
    checked, problems = [], []
    for path, node in every_node():
        if not isinstance(node.get("default"), dict):
            continue
        checked.append(path)
        properties = node.get("properties") or {}
        for key, value in node["default"].items():
            if key not in properties:
                problems.append(f"{path}: default names {key!r}, which is not a field")
            elif properties[key].get("default") != value:
                problems.append(f"{path}: default {key}={value!r} but {path}.{key} defaults to "
                                f"{properties[key].get('default')!r}")
    assert checked, "no object with a default found"
    assert not problems, "\n".join(problems)


def test_every_default_satisfies_its_own_schema():
    checked, problems = [], []
    for path, node in every_node():
        if "default" not in node or isinstance(node["default"], dict | list):
            continue
        checked.append(path)
        value = node["default"]
        if "pattern" in node and not re.search(node["pattern"], value):
            problems.append(f"{path}: default {value!r} does not match {node['pattern']!r}")
        if "maxLength" in node and len(value) > node["maxLength"]:
            problems.append(f"{path}: default {value!r} is longer than {node['maxLength']}")
        if "minimum" in node and value < node["minimum"]:
            problems.append(f"{path}: default {value!r} is below {node['minimum']}")
        if "maximum" in node and value > node["maximum"]:
            problems.append(f"{path}: default {value!r} is above {node['maximum']}")
        if "enum" in node and value not in node["enum"]:
            problems.append(f"{path}: default {value!r} is not one of {node['enum']}")
    assert checked
    assert not problems, "\n".join(problems)


def test_every_rule_that_converts_a_string_first_checks_it_matches_its_pattern():
    """A conversion of a malformed string is an evaluation error, which the API server appends to
    the field's own (clear) pattern error as "type conversion error … evaluating rule": each
    converted string must be guarded by its field's own pattern, so only the pattern error
    remains."""
    conversions, problems = [], []
    for path, node in every_node():
        for rule in node.get("x-kubernetes-validations") or []:
            text = rule["rule"]
            for function, operand in CONVERSION_CALL.findall(text):
                field = operand.removeprefix("self").removeprefix(".")
                schema = node["properties"][field] if field else node
                if schema.get("type") != "string":
                    continue
                conversions.append(f"{path}: {function}({operand})")
                pattern = schema.get("pattern")
                if pattern is None:
                    problems.append(f"{path}: {function}({operand}) converts a string that has "
                                    "no pattern to check it by")
                    continue
                escaped = pattern.replace("\\", "\\\\")  # in a CEL string that is not raw
                guards = [f"!{operand}.matches(r'{pattern}')", f"!{operand}.matches(R'{pattern}')",
                          f"!{operand}.matches('{escaped}')"]
                if not any(guard in text for guard in guards):
                    problems.append(f"{path}: {function}({operand}) is not guarded by "
                                    f"{guards[0]} || …: {text!r}")
    assert conversions, "no rule converts a string: this test has nothing left to check"
    assert not problems, "\n".join(problems)


# ---- the README's table ------------------------------------------------------------------------

def readme_rows() -> list[tuple[list[str], list[str], str]]:
    """(fields, defaults, meaning) per row of the README's "The ShardRing resource" table; a field
    written `.x` is a sibling of the row's first field, one default may stand for every field."""
    lines = README.read_text().splitlines()
    start = [i for i, line in enumerate(lines) if line.strip() == README_TABLE_HEADER]
    assert len(start) == 1, \
        f"docs/reference.md has {len(start)} tables headed {README_TABLE_HEADER!r}"
    rows = []
    for line in lines[start[0] + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        fields, parent = [], ""
        for name in re.findall(r"`([^`]+)`", cells[0]):
            if name.startswith("."):
                name = parent + name
            else:
                parent = name.rpartition(".")[0]
            fields.append(name.removeprefix("."))
        defaults = [value.strip().strip("`") for value in cells[1].split(",")]
        if len(defaults) == 1:
            defaults *= len(fields)
        assert len(defaults) == len(fields), f"README row {line!r}: fields and defaults differ"
        rows.append((fields, defaults, cells[2]))
    assert rows, "the README's table has no rows"
    return rows


def field_schema(field: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A spec field's schema and its parent's (for `required`)."""
    parent, node = {}, spec_schema()
    for name in field.split("."):
        properties = node.get("properties") or {}
        assert name in properties, f"README names spec.{field}, which the CRD does not have"
        parent, node = node, properties[name]
    return node, parent


def test_the_readme_table_agrees_with_the_schema():
    problems = []
    for fields, defaults, meaning in readme_rows():
        for field, written in zip(fields, defaults, strict=True):
            node, parent = field_schema(field)
            stated = stated_default(normalized(node.get("description", "")))
            has_default = "default" in node and not isinstance(node["default"], dict | list)
            if written == "required":
                if field.rpartition(".")[2] not in (parent.get("required") or []):
                    problems.append(f"{field}: README says required, the schema does not")
            elif written == "none":
                if has_default or stated is not None:
                    problems.append(f"{field}: README says no default, the schema has "
                                    f"{node.get('default', stated)!r}")
            elif has_default:
                if written != render(node["default"]):
                    problems.append(f"{field}: README default {written!r}, schema default "
                                    f"{render(node['default'])!r}")
            elif stated is None or written not in stated:
                # a default applied by the operator, not the API server: the description says it
                problems.append(f"{field}: README default {written!r}, the description states "
                                f"{stated!r}")
        bounds = re.search(r"\b(\d+)\.\.(\d+)\b", meaning)
        if bounds and len(fields) == 1:
            node, _ = field_schema(fields[0])
            if (node.get("minimum"), node.get("maximum")) != tuple(map(int, bounds.groups())):
                problems.append(f"{fields[0]}: README bounds {bounds.group(0)}, schema "
                                f"{node.get('minimum')}..{node.get('maximum')}")
    assert not problems, "\n".join(problems)
