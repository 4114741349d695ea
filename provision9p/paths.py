"""Where provision9p keeps things on the host: data, cache and the shipped data dirs."""

from __future__ import annotations

import os
from pathlib import Path

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


def data_home() -> Path:
    """Home of the built-in default lab's trees and state.

    As root this is under /var/lib so that an unprivileged QEMU can traverse it
    (/root is 0700).
    """
    if env := os.environ.get("PROVISION9P_HOME"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/provision9p")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local/share")
    return Path(base) / "provision9p"


def cache_home() -> Path:
    """Downloaded packages and cached base trees, shared by every lab."""
    if env := os.environ.get("PROVISION9P_CACHE"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/provision9p")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "provision9p"
