"""Idempotent modules with Ansible's parameter names and return values.

A module sees only the Connection protocol, so the same task runs on the root tree
before boot and over SSH after. Each returns Ansible's result keys (changed, msg,
diff, rc/stdout/stderr for commands) and changes nothing in check mode. Each declares
its parameters beside it (spec.Spec): that one declaration drives the load-time
check, the run-time coercion and `provision9p doc`.
"""

from typing import Any

from provision9p.tasks.modules import (
    accounts,
    archive,
    commands,
    control,
    cron,
    edits,
    facts,
    files,
    net,
    packages,
    query,
    services,
    system,
)
from provision9p.tasks.modules.base import Module, ModuleContext, coerce_args

MODULES: dict[str, Module] = {
    **files.MODULES, **edits.MODULES, **commands.MODULES, **control.MODULES,
    **accounts.MODULES, **system.MODULES, **packages.MODULES, **services.MODULES,
    **query.MODULES, **cron.MODULES, **net.MODULES, **archive.MODULES, **facts.MODULES,
}
#: Ansible's collection names for the same modules (ansible.posix.mount, ...).
ALIASES = {"ansible.posix.mount": "mount", "ansible.posix.sysctl": "sysctl",
           "ansible.posix.authorized_key": "authorized_key",
           "community.general.timezone": "timezone",
           "community.general.debconf": "debconf",
           "ansible.builtin.systemd_service": "systemd_service"}


def check_args(module: str, args: dict[str, Any]) -> None:
    """Load-time check of a task's parameters: unknown names (with "did you mean"),
    unsupported ones, and the values that are not templates (those are checked when
    rendered). Raises TaskError."""
    from provision9p.tasks.modules.base import check_mode
    from provision9p.tasks.modules.spec import coerce
    from provision9p.tasks.templating import templated

    coerce(module, MODULES[module].spec, args, partial=True)
    if "mode" in args and not templated(args["mode"]):
        check_mode(args["mode"])


__all__ = ["ALIASES", "MODULES", "Module", "ModuleContext", "check_args", "coerce_args"]
