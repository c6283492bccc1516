"""The parameter contract of seg_perception_node: schema, shipped params file, typed settings, rclpy
declaration, and static checks of the launch files (launch / launch_ros are not installed here)."""

from __future__ import annotations

import ast
import importlib.util
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from seg_perception.ros_io.params import (
    PARAMS_FILE,
    ROS_OWNED,
    SCHEMA_FILE,
    NodeSettings,
    ParamsError,
    QosSettings,
    check_overrides,
    declare_parameters,
    flatten,
    load_param_file,
    load_schema,
    parameter_specs,
    read_only_parameters,
    read_settings,
    settings_with_changes,
    unflatten,
    validate,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"
SHIPPED = CONFIG / PARAMS_FILE
LAUNCH = REPO / "launch"
LAUNCH_FILES = ("perception.launch.py", "replay.launch.py")

# The contract of the node's graph: these parameters are fixed at start-up.
READ_ONLY = {
    "cameras", "model_path", "backend", "precision", "device", "input_width", "input_height", "input_transport",
    "sync_camera_info", "intra_op_threads", "engine_cache_dir", "roles_config", "geometry.enabled", "geometry.mounts",
    "geometry.mounts_from_tf", "geometry.odometry", "geometry.grid_resolution_m", "geometry.grid_extent_m",
    "qos.input_reliability", "qos.input_depth", "qos.output_reliability", "qos.output_depth",
}
# What replay.launch.py may use of the `seg-perception` CLI: subcommand -> its flags.
CLI_CONTRACT = {"play": ("--rate", "--loop", "--clock")}
REPLAY_COMMAND = ["play", "drive.mcap", "--rate", "2.0", "--loop", "--clock"]  # as replay.launch.py runs it


def shipped_document() -> dict[str, Any]:
    return yaml.safe_load(SHIPPED.read_text())


def shipped_nested() -> dict[str, Any]:
    return shipped_document()["/**"]["ros__parameters"]


def object_schemas(schema: dict[str, Any], where: str = "(root)") -> list[tuple[str, dict[str, Any]]]:
    found = [(where, schema)] if schema.get("type") == "object" else []
    for key, sub in schema.get("properties", {}).items():
        found += object_schemas(sub, key if where == "(root)" else f"{where}.{key}")
    return found


def yaml_keys_with_comments(text: str) -> dict[str, str | None]:
    """Dotted key under ros__parameters -> the comment line directly above it (None if there is none)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "ros__parameters:")
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing groups
    keys: dict[str, str | None] = {}
    for index in range(start + 1, len(lines)):
        match = re.match(r"^(\s*)([A-Za-z_]\w*):", lines[index])
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        name = ".".join([key for _, key in stack] + [match.group(2)])
        above = lines[index - 1].strip()
        keys[name] = above if above.startswith("#") else None
        stack.append((indent, match.group(2)))
    return keys


# --- schema and shipped file --------------------------------------------------------------------


def test_schema_is_valid_draft7_and_shipped_yaml_satisfies_it() -> None:
    schema = load_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    Draft7Validator.check_schema(schema)
    errors = [e.message for e in Draft7Validator(schema).iter_errors(shipped_document())]
    assert errors == []
    assert (CONFIG / SCHEMA_FILE).is_file()


def test_every_object_level_is_closed_and_requires_all_its_keys() -> None:
    levels = object_schemas(load_schema())
    assert {where for where, _ in levels} >= {"(root)", "/**", "/**.ros__parameters", "/**.ros__parameters.qos"}
    for where, schema in levels:
        assert schema.get("additionalProperties") is False, where
        # Only ROS's own parameters (use_sim_time) are optional: rclpy gives them defaults.
        assert sorted(schema.get("required", [])) == sorted(set(schema["properties"]) - ROS_OWNED), where


def test_every_parameter_is_described_and_typed() -> None:
    specs = parameter_specs()
    assert len(specs) == 48
    for name, spec in specs.items():
        assert spec.get("description", "").strip(), name
        assert spec["type"] in {"string", "number", "integer", "boolean", "array"}, name


def test_read_only_parameters_are_the_contract() -> None:
    assert read_only_parameters() == READ_ONLY


def test_every_yaml_parameter_has_a_comment_directly_above() -> None:
    keys = yaml_keys_with_comments(SHIPPED.read_text())
    groups = {name.rsplit(".", 1)[0] for name in parameter_specs() if "." in name}
    assert set(keys) == set(parameter_specs()) | groups
    uncommented = [name for name, comment in keys.items() if comment is None]
    assert uncommented == []
    # "(read-only)" on the parameter's or its group's comment exactly for the read-only ones
    for name in parameter_specs():
        prefixes = [".".join(name.split(".")[: i + 1]) for i in range(name.count(".") + 1)]
        marked = any("(read-only)" in (keys[prefix] or "") for prefix in prefixes)
        assert marked == (name in READ_ONLY), name


def test_shipped_values_and_doubles_written_as_floats() -> None:
    nested = load_param_file(SHIPPED)
    flat = flatten(nested)
    assert list(flat) == list(parameter_specs())  # same order as the schema, too
    assert flat["cameras"] == ["front", "rear"]
    assert (flat["backend"], flat["precision"], flat["device"]) == ("onnxruntime", "fp32", "cpu")
    # ROS declares numbers as DOUBLE and refuses an integer from YAML: 150.0, never 150
    for name, spec in parameter_specs().items():
        if spec["type"] == "number":
            assert isinstance(flat[name], float), name


# --- errors -------------------------------------------------------------------------------------


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(params: dict[str, Any]) -> None:
        *groups, leaf = path.split(".")
        target = params
        for group in groups:
            target = target[group]
        target[leaf] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(params: dict[str, Any]) -> None:
        *groups, leaf = path.split(".")
        target = params
        for group in groups:
            target = target[group]
        del target[leaf]

    return change


@pytest.mark.parametrize(
    ("change", "key"),
    [
        pytest.param(_set("smoothing.warp", 1.0), "smoothing.warp", id="unknown-nested"),
        pytest.param(_set("colour", "red"), "colour", id="unknown-top"),
        pytest.param(_set("tracking.max_misses", "two"), "tracking.max_misses", id="wrong-type"),
        pytest.param(_set("publish.overlay", "yes"), "publish.overlay", id="wrong-type-bool"),
        pytest.param(_set("smoothing.strength", 1.5), "smoothing.strength", id="out-of-range"),
        pytest.param(_set("max_frame_age_s", 0.0), "max_frame_age_s", id="exclusive-minimum"),
        pytest.param(_set("input_width", 32), "input_width", id="size-between-0-and-64"),
        pytest.param(_set("backend", "cuda"), "backend", id="enum"),
        pytest.param(_set("device", "gpu0"), "device", id="pattern"),
        pytest.param(_set("cameras", ["front", "front"]), "cameras", id="duplicate-camera"),
        pytest.param(_set("cameras", ["Front"]), "cameras[0]", id="camera-name"),
        pytest.param(_drop("qos.output_depth"), "qos.output_depth", id="missing-nested"),
        pytest.param(_drop("model_path"), "model_path", id="missing-top"),
    ],
)
def test_bad_file_names_the_file_and_the_key(tmp_path: Path, change: Callable, key: str) -> None:
    document = shipped_document()
    change(document["/**"]["ros__parameters"])
    path = tmp_path / "bad.param.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ParamsError) as caught:
        load_param_file(path)
    assert caught.value.keys == [key]
    assert key in str(caught.value) and str(path) in str(caught.value)


def test_all_problems_reported_at_once() -> None:
    params = shipped_nested()
    params["smoothing"]["strength"] = 2.0
    params["qos"]["input_reliability"] = "sometimes"
    del params["tracking"]["iou_threshold"]
    params["extra"] = True
    with pytest.raises(ParamsError) as caught:
        validate(params, "mine.yaml")
    assert caught.value.keys == ["extra", "qos.input_reliability", "smoothing.strength", "tracking.iou_threshold"]
    assert caught.value.source == "mine.yaml"


def test_node_sections_are_accepted_and_merged_in_file_order(tmp_path: Path) -> None:
    params = shipped_nested()
    for section in ("seg_perception_node", "/seg_perception_node"):
        path = tmp_path / "node.yaml"
        path.write_text(yaml.safe_dump({section: {"ros__parameters": params}}))
        assert load_param_file(path) == params
    # wildcard first, node-specific later: the later one wins, as in ROS; other nodes are ignored
    path.write_text(yaml.safe_dump({
        "/**": {"ros__parameters": params},
        "other_node": {"ros__parameters": {"smoothing": {"strength": 9.0}}},
        "seg_perception_node": {"ros__parameters": {"smoothing": {"strength": 0.25}, "backend": "torch"}},
    }, sort_keys=False))
    merged = load_param_file(path)
    assert (merged["smoothing"]["strength"], merged["backend"]) == (0.25, "torch")
    assert merged["smoothing"]["max_gap_s"] == params["smoothing"]["max_gap_s"]


def test_file_without_our_section_or_parameters(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump({"camera_driver": {"ros__parameters": {"fps": 30}}}))
    with pytest.raises(ParamsError, match=re.escape(str(path))):
        load_param_file(path)
    path.write_text("/**:\n  parameters: {}\n")
    with pytest.raises(ParamsError) as caught:
        load_param_file(path)
    assert caught.value.keys == ["/**.ros__parameters"]
    path.write_text("/**: [unclosed\n")
    with pytest.raises(ParamsError, match="yaml"):
        load_param_file(path)


# --- flat names and typed settings --------------------------------------------------------------


def test_flatten_unflatten_round_trip() -> None:
    nested = shipped_nested()
    flat = flatten(nested)
    assert flat["smoothing.label_prior"] == 0.6 and flat["qos.output_depth"] == 5
    assert flat["cameras"] == ["front", "rear"]  # lists stay values
    assert unflatten(flat) == nested
    with pytest.raises(ValueError, match="both"):
        unflatten({"smoothing": 1, "smoothing.strength": 0.5})


def test_settings_round_trip_and_mirror_the_schema() -> None:
    nested = load_param_file(SHIPPED)
    settings = NodeSettings.from_nested(nested)
    assert settings.to_nested() == nested
    assert NodeSettings.from_nested(settings.to_nested()) == settings
    assert list(flatten(settings.to_nested())) == list(parameter_specs())
    assert settings.cameras == ("front", "rear")
    assert settings.smoothing.label_prior == 0.6 and settings.qos.output_depth == 5
    assert settings.input_size is None  # 0 x 0: the model card's size
    sized = NodeSettings.from_nested({**nested, "input_width": 1024, "input_height": 512})
    assert sized.input_size == (1024, 512)
    assert isinstance(settings.latency_budget_ms, float)
    hash(settings)  # frozen all the way down: safe to share with the worker thread


def test_literal_types_match_schema_enums() -> None:
    specs = parameter_specs()
    node_hints = typing.get_type_hints(NodeSettings)
    for name in ("backend", "precision", "output_resolution", "input_transport"):
        assert list(typing.get_args(node_hints[name])) == specs[name]["enum"], name
    qos_hints = typing.get_type_hints(QosSettings)
    assert list(typing.get_args(qos_hints["input_reliability"])) == specs["qos.input_reliability"]["enum"]


def test_from_nested_validates_first() -> None:
    nested = shipped_nested()
    nested["tracking"]["max_misses"] = 31
    with pytest.raises(ParamsError, match=r"tracking\.max_misses"):
        NodeSettings.from_nested(nested, source="test")


def test_settings_with_changes() -> None:
    current = NodeSettings.from_nested(load_param_file(SHIPPED))
    updated = settings_with_changes(current, {"smoothing.strength": 0.7, "publish.overlay": False})
    assert updated.smoothing.strength == 0.7 and updated.publish.overlay is False
    assert current.smoothing.strength == 0.0  # the cached settings are never modified in place
    whole = settings_with_changes(current, {"latency_budget_ms": 200})  # an int where a number is expected
    assert whole.latency_budget_ms == 200.0 and isinstance(whole.latency_budget_ms, float)
    with pytest.raises(ParamsError) as caught:
        settings_with_changes(current, {"smoothing.strength": 1.5})
    assert caught.value.keys == ["smoothing.strength"]
    with pytest.raises(ParamsError) as caught:
        settings_with_changes(current, {"smoothing.strenght": 0.7})
    assert caught.value.keys == ["smoothing.strenght"] and "unknown" in str(caught.value)


NUMBER_PARAMETERS = [name for name, spec in parameter_specs().items() if spec["type"] == "number"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("name", NUMBER_PARAMETERS)
def test_every_float_parameter_must_be_finite(name: str, value: float) -> None:
    # Every range check passes NaN (each comparison is false): finiteness is checked on its own.
    current = NodeSettings.from_nested(load_param_file(SHIPPED))
    with pytest.raises(ParamsError) as caught:
        settings_with_changes(current, {name: value})
    assert caught.value.keys == [name] and "finite" in str(caught.value)


def test_every_float_parameter_has_a_finite_range() -> None:
    for name in NUMBER_PARAMETERS:
        spec = parameter_specs()[name]
        assert "maximum" in spec and ("minimum" in spec or "exclusiveMinimum" in spec), name


def test_nan_in_a_file_and_a_flooding_period_are_named(tmp_path: Path) -> None:
    text = SHIPPED.read_text().replace("label_prior: 0.6", "label_prior: .nan")
    text = text.replace("diagnostics_period_s: 1.0", "diagnostics_period_s: 1.0e-6")
    path = tmp_path / "nan.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as caught:
        load_param_file(path)
    assert caught.value.keys == ["diagnostics_period_s", "smoothing.label_prior"]
    assert "finite" in caught.value.problems["smoothing.label_prior"]


def test_overrides_are_checked_like_the_file() -> None:
    nested = load_param_file(SHIPPED)
    assert check_overrides(nested, ["smoothing.strength:=0.5", "cameras:=[front]", "use_sim_time:=true",
                                    "geometry.mounts:=[1.5, 0.0, 1.45, 0.0, 0.035, 0.0]"]
                           )["smoothing"]["strength"] == 0.5
    with pytest.raises(ParamsError, match=r"--set: geometry\.mounts: needs 6 numbers per camera"):
        check_overrides(nested, ["cameras:=[front]"])  # relations too, as in a file: before ROS starts
    with pytest.raises(ParamsError) as caught:
        check_overrides(nested, ["max_frame_age_s:=.nan", "smoothing.strenght:=0.1", "noequals", "qos.input_depth:=0"])
    assert caught.value.keys == ["max_frame_age_s", "noequals", "qos.input_depth", "smoothing.strenght"]
    assert nested["max_frame_age_s"] == 0.5  # the file's values are not modified


def test_use_sim_time_is_rclpys_and_allowed_in_files(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(SHIPPED.read_text().replace("    cameras:", "    use_sim_time: true\n    cameras:", 1))
    nested = load_param_file(path)
    assert nested["use_sim_time"] is True and "use_sim_time" not in parameter_specs()
    settings = NodeSettings.from_nested(nested)
    assert settings_with_changes(settings, {"use_sim_time": True}) == settings


# --- rclpy ----------------------------------------------------------------------------------------


def _node(ros_context: object, name: str = "seg_perception_node", **kwargs: Any) -> Any:
    from rclpy.node import Node

    return Node(name, context=ros_context, start_parameter_services=False, enable_rosout=False, **kwargs)


@pytest.mark.ros
@pytest.mark.parametrize("given", ["params_file", "overrides"])
def test_node_reads_every_parameter(ros_context: object, given: str) -> None:
    from rclpy.parameter import Parameter

    nested = load_param_file(SHIPPED)
    if given == "params_file":  # what launch and `seg-perception node` do: ROS parses the YAML itself
        node = _node(ros_context, cli_args=["--ros-args", "--params-file", str(SHIPPED)])
    else:
        nested["smoothing"]["strength"] = 0.8
        overrides = [Parameter(name, value=value) for name, value in flatten(nested).items()]
        node = _node(ros_context, parameter_overrides=overrides)
    try:
        declare_parameters(node)
        assert read_settings(node) == NodeSettings.from_nested(nested)
        assert all(node.has_parameter(name) for name in parameter_specs())
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_unset_parameters_fail_at_start_up(ros_context: object) -> None:
    node = _node(ros_context, "unconfigured")
    try:
        declare_parameters(node)
        with pytest.raises(ParamsError) as caught:
            read_settings(node)
        assert set(caught.value.keys) == set(parameter_specs())
        assert "--params-file" in str(caught.value) and "/unconfigured" in str(caught.value)
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_descriptors_read_only_and_typed(ros_context: object) -> None:
    from rcl_interfaces.msg import ParameterType

    expected_type = {"string": ParameterType.PARAMETER_STRING, "number": ParameterType.PARAMETER_DOUBLE,
                     "integer": ParameterType.PARAMETER_INTEGER, "boolean": ParameterType.PARAMETER_BOOL,
                     "array": ParameterType.PARAMETER_STRING_ARRAY}
    node = _node(ros_context, cli_args=["--ros-args", "--params-file", str(SHIPPED)])
    try:
        declare_parameters(node)
        for name, spec in parameter_specs().items():
            descriptor = node.describe_parameter(name)
            assert descriptor.read_only == (name in READ_ONLY), name
            numbers = spec["type"] == "array" and spec["items"]["type"] == "number"
            assert descriptor.type == (ParameterType.PARAMETER_DOUBLE_ARRAY if numbers
                                       else expected_type[spec["type"]]), name
            assert descriptor.description == spec["description"], name
        assert "0.95" in node.describe_parameter("smoothing.strength").additional_constraints
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_on_set_callback_with_settings_with_changes(ros_context: object) -> None:
    from rcl_interfaces.msg import SetParametersResult
    from rclpy.parameter import Parameter

    node = _node(ros_context, cli_args=["--ros-args", "--params-file", str(SHIPPED)])
    try:
        declare_parameters(node)
        cache = {"settings": read_settings(node)}

        def on_set(parameters: list[Parameter]) -> SetParametersResult:  # as the node does it
            try:
                cache["settings"] = settings_with_changes(cache["settings"], {p.name: p.value for p in parameters})
            except ParamsError as error:
                return SetParametersResult(successful=False, reason=str(error))
            return SetParametersResult(successful=True)

        node.add_on_set_parameters_callback(on_set)
        assert node.set_parameters([Parameter("smoothing.strength", value=0.7)])[0].successful
        assert cache["settings"].smoothing.strength == 0.7
        rejected = node.set_parameters([Parameter("smoothing.strength", value=1.5)])[0]
        assert not rejected.successful and "smoothing.strength" in rejected.reason
        assert cache["settings"].smoothing.strength == 0.7
        assert not node.set_parameters([Parameter("backend", value="torch")])[0].successful  # read-only
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_integer_for_a_double_is_reported_at_declaration(ros_context: object) -> None:
    from rclpy.parameter import Parameter

    node = _node(ros_context, "typo", parameter_overrides=[Parameter("latency_budget_ms", value=150)])
    try:
        with pytest.raises(ParamsError) as caught:
            declare_parameters(node)
        assert caught.value.keys == ["latency_budget_ms"] and "decimal point" in str(caught.value)
    finally:
        node.destroy_node()


# --- launch files (static: launch / launch_ros are not installed in the venv) ---------------------


def _tree(name: str) -> ast.Module:
    return ast.parse((LAUNCH / name).read_text(), filename=name)


def _calls(tree: ast.AST, func: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == func]


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _literal(tree: ast.Module, expr: ast.expr | None) -> Any:
    # A literal, or a module-level constant (PACKAGE = "seg_perception") of the launch file.
    if isinstance(expr, ast.Name):
        for statement in tree.body:
            if isinstance(statement, ast.Assign) and any(getattr(t, "id", None) == expr.id for t in statement.targets):
                return ast.literal_eval(statement.value)
    return ast.literal_eval(expr)


def _strings(tree: ast.AST) -> list[str]:
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def _console_scripts() -> dict[str, str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    (setup_call,) = _calls(tree, "setup")
    entry_points = ast.literal_eval(_keyword(setup_call, "entry_points"))
    pairs = (line.split("=", 1) for line in entry_points["console_scripts"])
    return {name.strip(): target.strip() for name, target in pairs}


def _declared_arguments(tree: ast.AST) -> dict[str, str | None]:
    found = {}
    for call in _calls(tree, "DeclareLaunchArgument"):
        default = _keyword(call, "default_value")
        found[ast.literal_eval(call.args[0])] = None if default is None else ast.unparse(default)
    return found


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_launch_file_compiles_and_defines_generate_launch_description(name: str) -> None:
    source = (LAUNCH / name).read_text()
    compile(source, name, "exec")
    functions = {node.name for node in ast.walk(_tree(name)) if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in functions


def test_node_executable_is_a_console_script() -> None:
    tree = _tree("perception.launch.py")
    (node,) = _calls(tree, "Node")
    fields = {key: _literal(tree, _keyword(node, key)) for key in ("package", "executable", "name")}
    assert fields == {"package": "seg_perception", "executable": "seg_perception_node", "name": "seg_perception_node"}
    # Added by the node's change: seg_perception_node = seg_perception.ros_io.node:main
    assert _console_scripts().get("seg_perception_node") == "seg_perception.ros_io.node:main"


def test_launch_arguments() -> None:
    perception = _declared_arguments(_tree("perception.launch.py"))
    assert set(perception) == {"params_file", "backend", "model_path", "front_image", "rear_image",
                               "front_camera_info", "rear_camera_info", "odometry", "use_fastdds_profile",
                               "use_sim_time"}
    assert perception["odometry"] == "'/odom'"  # what `seg-perception synth` bags carry
    assert (perception["front_camera_info"], perception["rear_camera_info"]) == ("'/front/camera_info'",
                                                                                 "'/rear/camera_info'")
    assert (perception["front_image"], perception["rear_image"]) == ("'/front/image_raw'", "'/rear/image_raw'")
    assert perception["backend"] == perception["model_path"] == "''"  # empty: keep the file's value
    assert perception["use_fastdds_profile"] == "'true'"
    replay = _declared_arguments(_tree("replay.launch.py"))
    assert set(replay) == {"bag", "rate", "loop", "params_file", "backend", "model_path", "use_sim_time"}
    assert replay["bag"] is None  # required
    assert (replay["rate"], replay["loop"]) == ("'1.0'", "'false'")
    # Replay follows the bag's time by default; the live launch file follows the system clock.
    assert (perception["use_sim_time"], replay["use_sim_time"]) == ("'false'", "'true'")


def test_launch_files_name_existing_config_files() -> None:
    strings = _strings(_tree("perception.launch.py")) + _strings(_tree("replay.launch.py"))
    assert PARAMS_FILE in strings and "fastdds_profile.xml" in strings
    for name in (PARAMS_FILE, "fastdds_profile.xml"):
        assert (CONFIG / name).is_file(), name
    assert "perception.launch.py" in _strings(_tree("replay.launch.py"))
    assert "FASTDDS_DEFAULT_PROFILES_FILE" in _strings(_tree("perception.launch.py"))


def test_remaps_are_camera_inputs_of_the_shipped_cameras() -> None:
    (node,) = _calls(_tree("perception.launch.py"), "Node")
    remaps = [ast.literal_eval(pair.elts[0]) for pair in _keyword(node, "remappings").elts]
    cameras = shipped_nested()["cameras"]
    assert remaps == [f"~/{camera}/in/{topic}" for camera in cameras for topic in ("image", "camera_info")] + [
        "~/in/odometry"]


@pytest.mark.ros
def test_remap_rule_resolves_in_rclpy(ros_context: object) -> None:
    node = _node(ros_context, cli_args=["--ros-args", "-r", "~/front/in/image:=/front/image_raw"])
    try:
        assert node.resolve_topic_name("~/front/in/image") == "/front/image_raw"
        assert node.resolve_topic_name("~/rear/in/image") == "/seg_perception_node/rear/in/image"
    finally:
        node.destroy_node()


def test_replay_uses_only_the_cli_contract() -> None:
    tree = _tree("replay.launch.py")
    assert _calls(tree, "ExecuteProcess")
    (cmd,) = [node for node in ast.walk(tree) if isinstance(node, ast.List) and node.elts
              and isinstance(node.elts[0], ast.Constant) and node.elts[0].value == "seg-perception"]
    program, subcommand = (ast.literal_eval(word) for word in cmd.elts[:2])
    assert program in _console_scripts()
    assert subcommand in CLI_CONTRACT
    flags = {word for word in _strings(tree) if word.startswith("--")}  # --loop is added beside the list
    assert flags and flags <= set(CLI_CONTRACT[subcommand])


def test_cli_accepts_the_replay_command() -> None:
    from seg_perception.cli import build_parser

    try:
        args = build_parser().parse_args(REPLAY_COMMAND)
    except SystemExit as exit_:  # argparse's answer to an unknown subcommand or flag
        pytest.fail(f"`seg-perception {' '.join(REPLAY_COMMAND)}` is refused (exit {exit_.code})")
    assert args.command == "play"


def test_launch_files_build_with_real_launch() -> None:
    if importlib.util.find_spec("launch_ros") is None:
        pytest.skip("launch_ros is not installed (PyPI venv); checked statically above")
    import runpy

    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        get_package_share_directory("seg_perception")
    except (PackageNotFoundError, KeyError, ValueError) as error:
        pytest.skip(f"seg_perception is not in an ament index here: {error}")
    for name in LAUNCH_FILES:
        description = runpy.run_path(str(LAUNCH / name))["generate_launch_description"]()
        assert description.entities, name



def test_geometry_mounts_must_match_the_cameras_and_stand_above_ground() -> None:
    nested = shipped_nested()
    settings = NodeSettings.from_nested(nested)
    assert settings.mount_of("rear") == (-1.0, 0.0, 1.45, 0.0, 0.035, 3.14159265)
    assert all(isinstance(v, float) for v in settings.geometry.mounts)
    nested["geometry"]["mounts"] = nested["geometry"]["mounts"][:6]
    with pytest.raises(ParamsError, match=r"geometry\.mounts: needs 6 numbers per camera \(12 for 2 cameras\), got 6"):
        NodeSettings.from_nested(nested, "test.yaml")
    nested = shipped_nested()
    nested["geometry"]["mounts"][8] = 0.0  # the rear camera's z
    with pytest.raises(ParamsError, match=r"test\.yaml.*z \(the third number\) must be above the ground .* for rear"):
        NodeSettings.from_nested(nested, "test.yaml")
    nested = shipped_nested()
    nested["geometry"]["grid_extent_m"] = [10.0, -10.0, -5.0, 5.0]
    with pytest.raises(ParamsError, match=r"grid_extent_m: x_max > x_min"):
        NodeSettings.from_nested(nested, "test.yaml")
    nested = shipped_nested()
    nested["geometry"]["grid_resolution_m"] = 0.02
    nested["geometry"]["grid_extent_m"] = [-100.0, 100.0, -100.0, 100.0]
    with pytest.raises(ParamsError, match=r"grid_resolution_m: 100000000 cells"):
        NodeSettings.from_nested(nested, "test.yaml")
    nested = shipped_nested()
    nested["geometry"]["overhang_classes"] = ["car", "bus"]
    with pytest.raises(ParamsError, match=r"overhang_m: one per class of geometry\.overhang_classes \(2\), got 1"):
        NodeSettings.from_nested(nested, "test.yaml")
    assert settings.geometry.overhangs == (("car", 0.9),)
    nested = shipped_nested()
    nested["geometry"]["max_range_m"] = float("nan")
    with pytest.raises(ParamsError, match=r"geometry\.max_range_m"):
        NodeSettings.from_nested(nested, "test.yaml")
