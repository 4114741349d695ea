"""Idempotent modules with Ansible's parameter names and return values.

A module sees only the Connection protocol, so the same task runs on the root tree
before boot and over SSH after. Each returns Ansible's result keys (changed, msg,
diff, rc/stdout/stderr for commands) and changes nothing in check mode.
"""

from provision9p.tasks.modules import accounts, commands, files, packages, services, system
from provision9p.tasks.modules.base import Module, ModuleContext

MODULES: dict[str, Module] = {
    **files.MODULES, **commands.MODULES, **accounts.MODULES, **system.MODULES,
    **packages.MODULES, **services.MODULES,
}
#: Ansible's collection names for the same modules (ansible.posix.mount, ...).
ALIASES = {"ansible.posix.mount": "mount", "ansible.posix.sysctl": "sysctl",
           "ansible.posix.authorized_key": "authorized_key"}

__all__ = ["ALIASES", "MODULES", "Module", "ModuleContext"]
