"""The kernel requirements, read from the fragment files in kernel-configs/.

The fragments are data in the format scripts/kconfig/merge_config.sh merges
(`CONFIG_X=y`, `# CONFIG_X is not set`), so the same files that the checker reads
fix a kernel that fails it. Each option is annotated by comment lines just above it:

    # why the guest needs it (the first plain comment line is the reason)
    # module: virtio_ring virtio      (what =m builds, in the order to load it)
    # when: late                      (see WHEN below)
    CONFIG_VIRTIO=y

merge_config.sh ignores every comment line that is not `# CONFIG_X is not set`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from provision9p import paths
from provision9p.errors import KernelError

# boot: needed to mount the root; =m is fine only through an initramfs.
# late: needed, but a module can be loaded from the root tree after it is mounted.
# selected: another option selects it; not required itself, but when it is =m its
#           module must load early too (and where the order matters, it is here).
# optional: a machine type's need (microvm's virtio-mmio), not every guest's: never
#           missing, and when it is =m its module loads early like a boot module.
WHEN = ("boot", "late", "selected", "optional")

# Guest arch (QEMU or Debian name) -> fragments, in load order: the virtio core, the
# arch's transport to it, then 9P on top. Module load order follows this order.
ARCH_FRAGMENTS: dict[str, tuple[str, ...]] = {
    "x86_64": ("virtio.config", "x86_64-guest.config", "9p-root.config"),
    "aarch64": ("virtio.config", "arm64-virt.config", "9p-root.config"),
    "s390x": ("virtio.config", "s390x-ccw.config", "9p-root.config"),
}
ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")
_NOTE = re.compile(r"^#\s*(module|when):\s*(.*)$")


@dataclass(frozen=True)
class Requirement:
    """One option a guest kernel must have, and why."""

    option: str  # CONFIG_NET_9P
    value: str  # y, n (must be unset), or a literal value
    reason: str
    modules: tuple[str, ...]  # what =m builds, load order; empty: cannot be a module
    when: str
    fragment: Path
    line: int


def parse_fragment(path: Path) -> list[Requirement]:
    """The requirements of one fragment file; malformed lines raise KernelError."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise KernelError(f"cannot read the kernel fragment {path}: {exc.strerror}",
                          hint="check PROVISION9P_KERNEL_CONFIGS or the checkout") from exc
    reqs: list[Requirement] = []
    seen: dict[str, int] = {}
    reason, modules, when = "", (), "boot"
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        m = _SET.match(line) or _UNSET.match(line)
        if m:
            option = m.group(1)
            value = m.group(2) if m.re is _SET else "n"
            if option in seen:
                raise KernelError(f"{path}:{n}: {option} is already set on line "
                                  f"{seen[option]}", hint="keep one line per option")
            if not reason:
                raise KernelError(f"{path}:{n}: {option} has no `# reason` comment above it",
                                  hint="say in one comment line why the guest needs it")
            seen[option] = n
            reqs.append(Requirement(option, value, reason, tuple(modules), when, path, n))
            reason, modules, when = "", (), "boot"
            continue
        note = _NOTE.match(line)
        if note:
            key, value = note.groups()
            if key == "module":
                modules = tuple(value.replace(",", " ").split())
            elif value.strip() not in WHEN:
                raise KernelError(f"{path}:{n}: `when: {value.strip()}` is not one of "
                                  f"{', '.join(WHEN)}")
            else:
                when = value.strip()
        elif line.startswith("#"):
            reason = reason or line.lstrip("#").strip()
        elif not line:
            reason, modules, when = "", (), "boot"
        else:
            raise KernelError(f"{path}:{n}: not a kconfig line: {line!r}",
                              hint="use `CONFIG_X=y` or `# CONFIG_X is not set`")
    return reqs


def canonical_arch(arch: str) -> str:
    return ARCH_ALIASES.get(arch, arch)


def fragments_for(arch: str) -> list[Path]:
    """The fragment files a guest of `arch` (x86_64/amd64, aarch64/arm64, s390x) needs."""
    names = ARCH_FRAGMENTS.get(canonical_arch(arch))
    if names is None:
        raise KernelError(f"no kernel requirements for the architecture {arch!r}",
                          hint="one of " + ", ".join(sorted(ARCH_FRAGMENTS)))
    return [paths.kernel_configs_dir() / n for n in names]


def requirements_for(arch: str) -> list[Requirement]:
    """Every requirement for `arch`, in fragment order; an option twice is a data bug."""
    reqs: list[Requirement] = []
    where: dict[str, Requirement] = {}
    for frag in fragments_for(arch):
        for r in parse_fragment(frag):
            if r.option in where:
                first = where[r.option]
                raise KernelError(f"{r.fragment}:{r.line}: {r.option} is already in "
                                  f"{first.fragment}:{first.line}")
            where[r.option] = r
            reqs.append(r)
    return reqs


def parse_config(text: str) -> dict[str, str]:
    """A kernel .config as option -> value (`y`, `m`, a string); unset options absent."""
    config: dict[str, str] = {}
    for line in text.splitlines():
        m = _SET.match(line.strip())
        if m:
            config[m.group(1)] = m.group(2)
        else:
            u = _UNSET.match(line.strip())
            if u:
                config.pop(u.group(1), None)
    return config


def merge_fragments(base: str, fragments: list[Path]) -> str:
    """What merge_config.sh writes before olddefconfig: each fragment's options replace
    the base's (=y overriding =m), the fragment's lines appended in order."""
    lines = base.splitlines()
    for frag in fragments:
        text = frag.read_text()
        options = {r.option for r in parse_fragment(frag)}
        lines = [ln for ln in lines if _option_of(ln) not in options]
        lines += ["", *text.splitlines()]
    return "\n".join(lines) + "\n"


def _option_of(line: str) -> str | None:
    m = _SET.match(line.strip()) or _UNSET.match(line.strip())
    return m.group(1) if m else None
