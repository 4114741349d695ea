"""Where provision9p keeps things on the host: data, cache and the shipped data dirs."""

from __future__ import annotations

import os
from pathlib import Path

# The checkout (or installed tree) root: roles/ and kernel-configs/ live beside the package.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def kernel_configs_dir() -> Path:
    return Path(os.environ.get("PROVISION9P_KERNEL_CONFIGS", PROJECT_ROOT / "kernel-configs"))


def shipped_roles_dir() -> Path:
    return PROJECT_ROOT / "roles"


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
