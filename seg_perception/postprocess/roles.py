"""Role masks: which classes count as drivable area, lane markings and obstacles (config/classes.yaml)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

ROLE_NAMES = ("drivable", "lane", "obstacles")


class RoleConfigError(ValueError):
    """config/classes.yaml is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class RoleMapping:
    """Class ids per role for one model; a role with no class is unavailable, never an empty mask."""

    drivable: tuple[int, ...]
    lane: tuple[int, ...]
    obstacles: tuple[int, ...]
    missing: dict[str, tuple[str, ...]]  # role -> configured class names the model does not have

    def available(self, role: str) -> bool:
        return bool(getattr(self, role))

    def unavailable_roles(self) -> tuple[str, ...]:
        return tuple(role for role in ROLE_NAMES if not self.available(role))

    def summary(self) -> dict[str, object]:
        return {role: list(getattr(self, role)) if self.available(role) else "unavailable" for role in ROLE_NAMES}


def load_role_config(path: Path | str) -> dict:
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise RoleConfigError(f"{path}: cannot read: {error}") from error
    roles = (config or {}).get("roles")
    if not isinstance(roles, dict) or set(roles) != set(ROLE_NAMES):
        raise RoleConfigError(f"{path}: 'roles' must map exactly {', '.join(ROLE_NAMES)}")
    for role in ("drivable", "lane"):
        if not (isinstance(roles[role], list) and all(isinstance(n, str) for n in roles[role])):
            raise RoleConfigError(f"{path}: roles.{role} must be a list of class names")
    obstacles = roles["obstacles"]
    if (not isinstance(obstacles, dict) or set(obstacles) != {"things", "static"}
            or not isinstance(obstacles["things"], bool) or not isinstance(obstacles["static"], list)):
        raise RoleConfigError(f"{path}: roles.obstacles must be {{things: bool, static: [class names]}}")
    return roles


def resolve_roles(roles: dict, class_names: Sequence[str], thing_ids: Sequence[int]) -> RoleMapping:
    """Class ids of each role among the model's classes; names the model lacks are recorded as missing."""
    index = {name: i for i, name in enumerate(class_names)}
    missing: dict[str, tuple[str, ...]] = {}

    def ids(role: str, names: Sequence[str]) -> tuple[int, ...]:
        absent = tuple(n for n in names if n not in index)
        if absent:
            missing[role] = absent
        return tuple(sorted(index[n] for n in names if n in index))

    obstacles = set(ids("obstacles", roles["obstacles"]["static"]))
    if roles["obstacles"]["things"]:
        obstacles |= set(thing_ids)
    return RoleMapping(drivable=ids("drivable", roles["drivable"]), lane=ids("lane", roles["lane"]),
                       obstacles=tuple(sorted(obstacles)), missing=missing)


def default_role_config() -> Path:
    """The shipped config/classes.yaml."""
    from seg_perception.ros_io.environment import config_file

    return config_file("classes.yaml")


def role_mapping_for(class_names: Sequence[str], thing_ids: Sequence[int], path: Path | None = None) -> RoleMapping:
    """Roles of a model's classes, from ``path`` or the shipped config."""
    return resolve_roles(load_role_config(path or default_role_config()), class_names, thing_ids)


def role_masks(semantic: torch.Tensor, mapping: RoleMapping) -> dict[str, torch.Tensor]:
    """Boolean (N,H,W) masks of the available roles from a (N,H,W) class-id map.

    Drivable never includes obstacle pixels; unavailable roles are absent from the result.
    """
    masks: dict[str, torch.Tensor] = {}
    for role in ROLE_NAMES:
        class_ids = getattr(mapping, role)
        if class_ids:
            masks[role] = torch.isin(semantic, torch.tensor(class_ids, device=semantic.device))
    if "drivable" in masks and "obstacles" in masks:
        masks["drivable"] &= ~masks["obstacles"]
    return masks
