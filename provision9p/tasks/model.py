"""The task tree as loaded: roles, tasks, blocks and static imports, with where each
came from (role, file, line) so every later error can point at it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from provision9p.errors import RoleError

# libyaml's parser when present: several times faster than the pure-Python one.
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_Base):  # type: ignore[valid-type,misc]
    """Records each mapping's line so errors can point at the task."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = {str(k): v for k, v in loader.construct_mapping(node, deep=True).items()}
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


#: Where a task may run: on the tree before boot, over SSH after, or either.
PHASES = ("any", "tree", "ssh")


def read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(), Loader=_LineLoader)
    except yaml.YAMLError as exc:
        raise RoleError(f"{path}: not valid YAML: {exc}") from None
    except OSError as exc:
        raise RoleError(f"{path}: cannot be read: {exc.strerror}") from None


def strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_lines(v) for k, v in value.items() if k != "__line__"}
    if isinstance(value, list):
        return [strip_lines(v) for v in value]
    return value


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def tag_set(value: Any) -> frozenset[str]:
    """`tags: [a, b]`, `tags: a` or `tags: "a, b"`."""
    out: set[str] = set()
    for tag in as_list(value):
        out.update(t.strip() for t in str(tag).split(",") if t.strip())
    return frozenset(out)


@dataclass(eq=False)
class RoleDep:
    """A role's entry in meta/main.yml `dependencies`."""

    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()
    when: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class Role:
    name: str
    path: Path
    defaults: dict[str, Any]
    vars: dict[str, Any]
    tasks: list[Task] = field(default_factory=list)
    handlers: list[Task] = field(default_factory=list)
    dependencies: list[RoleDep] = field(default_factory=list)
    phase: str = "any"
    tags: frozenset[str] = frozenset()  # the lab's `tags:` on the role reference
    search: list[Path] = field(default_factory=list)  # roles_path, for import_role
    allow_duplicates: bool = False
    #: Roles its tasks import statically (import_role): their handlers join the play's.
    imports: list[Role] = field(default_factory=list)
    #: Its dependencies, loaded, when it is itself imported or included by a task
    #: (a play's roles get theirs through the play).
    dep_roles: list[tuple[RoleDep, Role]] = field(default_factory=list)
    #: meta/argument_specs.yml's options for the entry point its tasks came from.
    arg_spec: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class Task:
    """A task, or a block (module "block"), or a static import whose `children` were
    read at load (import_tasks, import_role)."""

    name: str
    module: str
    args: dict[str, Any]
    keywords: dict[str, Any]
    where: str  # "role R, file:line, task 'name'", for messages
    role: Role
    path: Path | None = None  # the file the task is in (relative includes start there)
    children: list[Task] = field(default_factory=list)
    rescue: list[Task] = field(default_factory=list)
    always: list[Task] = field(default_factory=list)
    #: ("loop", expression) or (lookup name, terms) for `with_<lookup>`; None: no loop.
    loop: tuple[str, Any] | None = None

    @property
    def tags(self) -> frozenset[str]:
        return tag_set(self.keywords.get("tags")) | self.role.tags
