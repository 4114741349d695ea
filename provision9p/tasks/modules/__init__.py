"""Idempotent modules with Ansible's parameter names and return values.

A module sees only the Connection protocol, so the same task runs on the root tree
before boot and over SSH after. Each returns Ansible's result keys (changed, msg,
diff, rc/stdout/stderr for commands) and changes nothing in check mode.
"""

from typing import Any

from provision9p.errors import TaskError
from provision9p.tasks.modules import accounts, commands, facts, files, packages, services, system
from provision9p.tasks.modules.base import Module, ModuleContext, coerce_args

MODULES: dict[str, Module] = {
    **files.MODULES, **commands.MODULES, **accounts.MODULES, **system.MODULES,
    **packages.MODULES, **services.MODULES, **facts.MODULES,
}
#: Ansible's collection names for the same modules (ansible.posix.mount, ...).
ALIASES = {"ansible.posix.mount": "mount", "ansible.posix.sysctl": "sysctl",
           "ansible.posix.authorized_key": "authorized_key"}



def _templated(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(_templated(v) for v in value.values())
    if isinstance(value, list):
        return any(_templated(v) for v in value)
    return False


def check_args(module: str, args: dict[str, Any]) -> None:
    """Load-time check of a task's parameters: unknown names, and the values that are
    not templates (those are checked when rendered). Raises TaskError."""
    spec = MODULES[module].params
    unknown = sorted(set(args) - set(spec))
    if unknown:
        raise TaskError(f"{module} has no parameter {', '.join(unknown)}",
                        hint=f"{module} takes: {', '.join(sorted(spec))}")
    coerce_args(module, {k: v for k, v in args.items() if not _templated(v)})


__all__ = ["ALIASES", "MODULES", "Module", "ModuleContext", "check_args"]
