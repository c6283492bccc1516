"""The parameter contract of seg_perception_node.

config/perception.schema.json is the single source of truth: names, types, ranges, descriptions and
which parameters are read-only (JSON Schema ``readOnly``) all come from it. config/perception.param.yaml
is the shipped file that satisfies it. The node declares every parameter typed and without a default,
reads them once into a frozen :class:`NodeSettings`, and on a parameter change builds the next settings
with :func:`settings_with_changes` (never re-reading parameters per frame).

rclpy is imported only by the functions that take a node, so files can be checked without ROS.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin, get_type_hints

import yaml
from jsonschema import Draft7Validator, validators

from seg_perception.ros_io.environment import config_file

if TYPE_CHECKING:
    from rclpy.node import Node

SCHEMA_FILE = "perception.schema.json"
PARAMS_FILE = "perception.param.yaml"
NODE_NAME = "seg_perception_node"
# Sections of a ROS params file that apply to our node: all that are present apply, later ones win.
SECTIONS = ("/**", NODE_NAME, f"/{NODE_NAME}")
# Parameters that rclpy declares and handles itself: allowed in a params file, never declared by us,
# not part of NodeSettings.
ROS_OWNED = frozenset({"use_sim_time"})

Backend = Literal["torch", "onnxruntime", "tensorrt"]
Precision = Literal["fp32", "fp16", "int8"]
OutputResolution = Literal["model", "camera"]
InputTransport = Literal["raw", "compressed"]
Reliability = Literal["best_effort", "reliable"]


class ParamsError(ValueError):
    """Invalid, unknown or missing parameters; the message names the source and every offending key."""

    def __init__(self, source: str, problems: Mapping[str, str], hint: str = "") -> None:
        self.source = source
        self.problems = dict(sorted(problems.items()))
        details = "; ".join(f"{key}: {problem}" for key, problem in self.problems.items())
        super().__init__(f"invalid parameters in {source}: {details}" + (f" ({hint})" if hint else ""))

    @property
    def keys(self) -> list[str]:
        return list(self.problems)


# --- schema -------------------------------------------------------------------------------------


def load_schema() -> dict[str, Any]:
    """The JSON schema of the whole params file (a fresh copy: callers may modify it)."""
    return json.loads(config_file(SCHEMA_FILE).read_text(encoding="utf-8"))


@functools.cache
def _parameters_schema() -> dict[str, Any]:
    # The part that describes ros__parameters; cached because the node validates every change.
    return load_schema()["properties"]["/**"]["properties"]["ros__parameters"]


def _is_finite_number(checker: Any, instance: Any) -> bool:
    return Draft7Validator.TYPE_CHECKER.is_type(instance, "number") and math.isfinite(instance)


# JSON has no NaN or infinity, but YAML (.nan, .inf) and ROS doubles do, and every range check passes
# for NaN (each comparison is false): so a "number" here is a finite one.
_FiniteValidator = validators.extend(
    Draft7Validator, type_checker=Draft7Validator.TYPE_CHECKER.redefine("number", _is_finite_number))


@functools.cache
def _validator() -> Draft7Validator:
    return _FiniteValidator(_parameters_schema())


def _leaves(schema: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for key, spec in schema["properties"].items():
        if spec.get("type") == "object":
            yield from _leaves(spec, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", spec


def parameter_specs() -> dict[str, dict[str, Any]]:
    """Dotted parameter name -> its schema, in file order (our parameters; not ROS_OWNED ones)."""
    return {name: spec for name, spec in _leaves(_parameters_schema()) if name not in ROS_OWNED}


def read_only_parameters() -> frozenset[str]:
    """Parameters fixed at start-up because they shape the node's graph (topics, QoS, model)."""
    return frozenset(name for name, spec in parameter_specs().items() if spec.get("readOnly", False))


# --- nested <-> dotted --------------------------------------------------------------------------


def flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values, an empty map stays a value."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``; ValueError when a name is both a value and a group."""
    nested: dict[str, Any] = {}
    for name, value in flat.items():
        *groups, leaf = name.split(".")
        target = nested
        for group in groups:
            target = target.setdefault(group, {})
            if not isinstance(target, dict):
                raise ValueError(f"{name!r}: {group!r} is both a parameter and a group")
        if isinstance(target.get(leaf), dict):
            raise ValueError(f"{name!r} is both a parameter and a group")
        target[leaf] = value
    return nested


def _plain(value: Any) -> Any:
    # jsonschema knows only list as "array": tuples (ours) and other sequences (rclpy's) become lists.
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _dotted(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


# --- validation ---------------------------------------------------------------------------------


def validate(nested: Mapping[str, Any], source: str) -> None:
    """Check a nested ros__parameters dict against the schema; ParamsError lists every problem."""
    problems: dict[str, str] = {}
    for error in _validator().iter_errors(_plain(nested)):
        where = _dotted(error.absolute_path)
        # required / additionalProperties report on the enclosing object: name the key itself.
        if error.validator == "required":
            for key in error.validator_value:
                if key not in error.instance:
                    problems.setdefault(_join(where, key), "missing")
        elif error.validator == "additionalProperties":
            known = error.schema.get("properties", {})
            for key in error.instance:
                if key not in known:
                    problems.setdefault(_join(where, key), "unknown parameter")
        elif error.validator == "type" and isinstance(error.instance, float) and not math.isfinite(error.instance):
            problems.setdefault(where, f"must be a finite number, got {error.instance}")
        else:
            problems.setdefault(where or "(parameters)", error.message)
    if problems:
        raise ParamsError(source, problems)
    _check_relations(nested, source)  # needs the schema's shape: only once that holds


def load_param_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated nested ``ros__parameters`` of our node from a ROS params file.

    Sections ``/**``, ``seg_perception_node`` and ``/seg_perception_node`` apply (merged in file order,
    as ROS does); sections of other nodes are ignored.
    """
    source = str(path)
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ParamsError(source, {"(yaml)": str(error).replace("\n", " ")}) from error
    if not isinstance(document, Mapping) or not any(section in document for section in SECTIONS):
        raise ParamsError(source, {"/**": f"no section {', '.join(SECTIONS)}"})
    merged: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for section, content in document.items():
        if section not in SECTIONS:
            continue
        parameters = content.get("ros__parameters") if isinstance(content, Mapping) else None
        if not isinstance(parameters, Mapping):
            problems[f"{section}.ros__parameters"] = "missing or not a map"
            continue
        merged.update(flatten(parameters))
    if problems:
        raise ParamsError(source, problems)
    try:
        nested = unflatten(merged)
    except ValueError as error:
        raise ParamsError(source, {"(structure)": str(error)}) from error
    validate(nested, source)
    return nested


def check_overrides(nested: Mapping[str, Any], overrides: Iterable[str], source: str = "--set") -> dict[str, Any]:
    """``nested`` with ``NAME:=VALUE`` overrides applied (values read as YAML, as ROS reads ``-p``), validated.

    Lets the CLI refuse a bad override by name before ROS starts, as it does a bad params file.
    """
    flat = flatten(nested)
    problems: dict[str, str] = {}
    for override in overrides:
        name, sep, text = override.partition(":=")
        if not sep or not name:
            problems[override] = "expected NAME:=VALUE"
            continue
        if name in ROS_OWNED:
            continue  # rclpy's own; it checks them
        if name not in parameter_specs():
            problems[name] = "unknown parameter"
            continue
        try:
            flat[name] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            problems[name] = f"not a YAML value: {str(error).splitlines()[0]}"
    updated = unflatten(flat)
    try:
        validate(updated, source)
    except ParamsError as error:  # reported together with the overrides that could not be read
        problems = error.problems | problems
    if problems:
        raise ParamsError(source, problems)
    return updated


# --- typed settings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SmoothingSettings:
    enabled: bool
    strength: float
    label_prior: float
    max_gap_s: float


@dataclass(frozen=True)
class TrackingSettings:
    iou_threshold: float
    max_misses: int


@dataclass(frozen=True)
class PublishSettings:
    drivable_area: bool
    drivable_grid: bool  # one grid for all cameras: ~/out/drivable_grid, not ~/<camera>/out/...
    lanes: bool  # ~/<camera>/out/lanes, ~/out/lanes and ~/out/lane_markers
    lane_markings: bool
    obstacles: bool
    instances: bool
    semantic: bool
    obstacle_list: bool
    latency: bool
    overlay: bool


@dataclass(frozen=True)
class GeometrySettings:
    enabled: bool
    mounts: tuple[float, ...]  # 6 per camera: x, y, z, roll, pitch, yaw
    mounts_from_tf: bool  # instead of mounts: base_link -> each camera_info's frame on TF
    odometry: bool  # ~/in/odometry: the vehicle's own motion taken out of obstacle velocities
    max_range_m: float
    sidewalk_height_m: float  # contacts on sidewalk are projected onto this height
    overhang_classes: tuple[str, ...]  # vehicle classes whose contact moves by ...
    overhang_m: tuple[float, ...]  # ... this much towards base_link's y axis

    @property
    def overhangs(self) -> tuple[tuple[str, float], ...]:
        return tuple(zip(self.overhang_classes, self.overhang_m, strict=True))
    grid_resolution_m: float
    grid_extent_m: tuple[float, ...]  # x_min, x_max, y_min, y_max


@dataclass(frozen=True)
class QosSettings:
    input_reliability: Reliability
    input_depth: int
    output_reliability: Reliability
    output_depth: int


@dataclass(frozen=True)
class NodeSettings:
    """Every parameter of seg_perception_node, validated and typed (field names = parameter names)."""

    cameras: tuple[str, ...]
    model_path: str
    backend: Backend
    precision: Precision
    device: str
    input_width: int
    input_height: int
    output_resolution: OutputResolution
    input_transport: InputTransport
    sync_camera_info: bool
    max_frame_age_s: float
    latency_budget_ms: float
    no_input_timeout_s: float
    diagnostics_period_s: float
    max_image_pixels: int
    intra_op_threads: int
    roles_config: str
    engine_cache_dir: str
    smoothing: SmoothingSettings
    tracking: TrackingSettings
    geometry: GeometrySettings
    publish: PublishSettings
    qos: QosSettings

    def mount_of(self, camera: str) -> tuple[float, float, float, float, float, float]:
        index = self.cameras.index(camera)
        return tuple(self.geometry.mounts[6 * index:6 * index + 6])  # type: ignore[return-value]

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The model input (width, height) asked for; None: the model card's (both parameters 0)."""
        return (self.input_width, self.input_height) if self.input_width and self.input_height else None

    @classmethod
    def from_nested(cls, nested: Mapping[str, Any], source: str = "parameters") -> NodeSettings:
        """Validate a nested ros__parameters dict and type it; ParamsError names ``source``."""
        validate(nested, source)
        return _build(cls, nested)

    def to_nested(self) -> dict[str, Any]:
        """The nested ros__parameters dict (lists, not tuples) that from_nested reads back."""
        return _plain(asdict(self))


def _check_relations(nested: Mapping[str, Any], source: str) -> None:
    """What the schema cannot state: relations between parameters."""
    cameras, mounts = nested["cameras"], nested["geometry"]["mounts"]
    if len(mounts) != 6 * len(cameras):
        raise ParamsError(source, {"geometry.mounts": f"needs 6 numbers per camera ({6 * len(cameras)} for "
                                                      f"{len(cameras)} cameras), got {len(mounts)}"})
    x_min, x_max, y_min, y_max = nested["geometry"]["grid_extent_m"]
    if x_max <= x_min or y_max <= y_min:
        raise ParamsError(source, {"geometry.grid_extent_m": f"x_max > x_min and y_max > y_min, got {x_min}, "
                                                             f"{x_max}, {y_min}, {y_max}"})
    cells = (x_max - x_min) * (y_max - y_min) / nested["geometry"]["grid_resolution_m"] ** 2
    if cells > 4_000_000:
        raise ParamsError(source, {"geometry.grid_resolution_m": f"{cells:.0f} cells; coarsen it or shrink "
                                                                 "geometry.grid_extent_m (at most 4000000)"})
    geometry = nested["geometry"]
    if len(geometry["overhang_classes"]) != len(geometry["overhang_m"]):
        raise ParamsError(source, {"geometry.overhang_m": f"one per class of geometry.overhang_classes "
                                                          f"({len(geometry['overhang_classes'])}), got "
                                                          f"{len(geometry['overhang_m'])}"})
    low = [camera for camera, z in zip(cameras, mounts[2::6], strict=True) if z <= 0]
    if low:
        raise ParamsError(source, {"geometry.mounts": f"z (the third number) must be above the ground (> 0) "
                                                      f"for {', '.join(low)}"})


def _build(cls: type[Any], data: Mapping[str, Any]) -> Any:
    # The schema has checked values already; this only fixes Python types (YAML 1 for a float, lists).
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in fields(cls):
        hint, value = hints[field.name], data[field.name]
        if is_dataclass(hint):
            value = _build(hint, value)  # type: ignore[arg-type]
        elif hint is float:
            value = float(value)
        elif hint is int:
            value = int(value)
        elif get_origin(hint) is tuple:
            value = tuple(float(v) for v in value) if get_args(hint)[0] is float else tuple(value)
        values[field.name] = value
    return cls(**values)


def settings_with_changes(
    current: NodeSettings, changes: Mapping[str, object], source: str = "parameter change"
) -> NodeSettings:
    """``current`` with dotted-name ``changes`` applied, validated; ParamsError on unknown names or values.

    Read-only parameters are refused by rclpy itself before the node's on-set callback runs.
    """
    flat = flatten(current.to_nested())
    changes = {name: value for name, value in changes.items() if name not in ROS_OWNED}
    unknown = {name: "unknown parameter" for name in changes if name not in flat}
    if unknown:
        raise ParamsError(source, unknown)
    flat.update({name: _plain(value) for name, value in changes.items()})
    return NodeSettings.from_nested(unflatten(flat), source)


# --- rclpy --------------------------------------------------------------------------------------


def _ros_type(spec: Mapping[str, Any]) -> Any:
    from rclpy.parameter import Parameter

    types = {
        "string": Parameter.Type.STRING,
        "number": Parameter.Type.DOUBLE,
        "integer": Parameter.Type.INTEGER,
        "boolean": Parameter.Type.BOOL,
    }
    if spec["type"] == "array":
        numbers = spec["items"]["type"] == "number"
        return Parameter.Type.DOUBLE_ARRAY if numbers else Parameter.Type.STRING_ARRAY
    return types[spec["type"]]


def _constraints(spec: Mapping[str, Any]) -> str:
    # A one-line summary for `ros2 param describe`; the schema stays the authority.
    parts: list[str] = []
    if "enum" in spec:
        parts.append("one of " + ", ".join(str(v) for v in spec["enum"]))
    if "const" in spec:
        parts.append(f"= {spec['const']}")
    for key, op in (("exclusiveMinimum", ">"), ("minimum", ">="), ("maximum", "<=")):
        if key in spec:
            parts.append(f"{op} {spec[key]}")
    if "minItems" in spec or "maxItems" in spec:
        parts.append(f"{spec.get('minItems', 0)}..{spec.get('maxItems', 'any')} items")
    if spec.get("uniqueItems"):
        parts.append("unique")
    if "pattern" in spec:
        parts.append(f"matches {spec['pattern']}")
    if "items" in spec:
        parts.append(f"each {_constraints(spec['items'])}")
    if "anyOf" in spec:
        parts.append(" or ".join(f"({_constraints(option)})" for option in spec["anyOf"]))
    return ", ".join(parts)


def declare_parameters(node: Node) -> None:
    """Declare every parameter of the schema on ``node``: typed, described, without default values.

    Values come from the node's overrides (--params-file, launch). A value of the wrong type (an
    integer for a double) is reported for all parameters at once as ParamsError.
    """
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.exceptions import InvalidParameterTypeException

    read_only = read_only_parameters()
    problems: dict[str, str] = {}
    for name, spec in parameter_specs().items():
        descriptor = ParameterDescriptor(
            description=spec["description"], read_only=name in read_only, additional_constraints=_constraints(spec)
        )
        try:
            node.declare_parameter(name, _ros_type(spec), descriptor)
        except InvalidParameterTypeException as error:
            hint = " (write doubles with a decimal point: 1.0)" if spec["type"] == "number" else ""
            problems[name] = f"{error}{hint}"
    if problems:
        raise ParamsError(f"node {node.get_fully_qualified_name()}", problems)


def read_settings(node: Node) -> NodeSettings:
    """All declared parameters of ``node`` as NodeSettings; ParamsError lists every unset one."""
    from rclpy.exceptions import ParameterUninitializedException

    source = f"node {node.get_fully_qualified_name()}"
    values: dict[str, Any] = {}
    unset: list[str] = []
    for name in parameter_specs():
        try:
            values[name] = node.get_parameter(name).value
        except ParameterUninitializedException:
            unset.append(name)
    if unset:
        hint = f"the node has no defaults: pass a params file, e.g. --ros-args --params-file {PARAMS_FILE}"
        raise ParamsError(source, dict.fromkeys(unset, "not set"), hint)
    return NodeSettings.from_nested(unflatten(values), source)
