"""Where provision9p keeps things on the host: data, cache and the shipped data dirs."""

from __future__ import annotations

import os
from pathlib import Path

from provision9p.rootfs import rootless

PACKAGE = Path(__file__).resolve().parent
# A checkout keeps roles/ and kernel-configs/ beside the package; an installed wheel has
# them inside it (setup.py maps them there).
PROJECT_ROOT = PACKAGE.parent


def _shipped(installed: str, checkout: str) -> Path:
    inside = PACKAGE / installed
    return inside if inside.is_dir() else PROJECT_ROOT / checkout


def kernel_configs_dir() -> Path:
    if env := os.environ.get("PROVISION9P_KERNEL_CONFIGS"):
        return Path(env)
    return _shipped("kernel_configs", "kernel-configs")


def shipped_roles_dir() -> Path:
    return _shipped("roles", "roles")


def system_wide() -> bool:
    """Whether the host-wide places (/var/lib, /var/cache) are ours: running as root.

    A normal user's build runs as uid 0 of a user namespace of its own
    (rootfs/rootless.py); it still keeps the user's places under its home.
    """
    return os.geteuid() == 0 and not rootless.inside()


def data_home() -> Path:
    """Home of the built-in default lab's trees and state.

    As root this is under /var/lib so that an unprivileged QEMU can traverse it
    (/root is 0700); a normal user's is its XDG state directory (QEMU runs as that user).
    """
    if env := os.environ.get("PROVISION9P_HOME"):
        return Path(env)
    if system_wide():
        return Path("/var/lib/provision9p")
    return _xdg("XDG_STATE_HOME", ".local/state")


def cache_home() -> Path:
    """Downloaded packages and cached base trees, shared by every lab."""
    if env := os.environ.get("PROVISION9P_CACHE"):
        return Path(env)
    if system_wide():
        return Path("/var/cache/provision9p")
    return _xdg("XDG_CACHE_HOME", ".cache")


def _xdg(variable: str, default: str) -> Path:
    # The XDG spec: an unset, empty or relative value means the default.
    base = os.environ.get(variable, "")
    if not os.path.isabs(base):
        base = str(Path.home() / default)
    return Path(base) / "provision9p"
