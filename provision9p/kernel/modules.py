"""Kernel modules: what each .ko depends on, and the order to load them in.

Load order matters (DESIGN.md: `virtio_ring` before `virtio`, else "Unknown symbol
virtio_break_device"). modules.dep has the truth when present, but Debian's
linux-image .deb ships no modules.dep (only modules.order and modules.builtin*), so
the dependencies also come from each module's own `.modinfo` ELF section, which is
where depmod reads them from.
"""

from __future__ import annotations

import gzip
import lzma
import struct
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from provision9p.errors import KernelError

MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


@dataclass(frozen=True)
class ModuleInfo:
    name: str  # the kernel's name for it: dashes folded to underscores
    path: str  # relative to lib/modules/<release>
    depends: tuple[str, ...]


def canonical(name: str) -> str:
    """The kernel treats `-` and `_` in module names alike; we keep underscores."""
    return name.replace("-", "_")


def module_name_of(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    for suffix in MODULE_SUFFIXES:
        if base.endswith(suffix):
            return canonical(base[: -len(suffix)])
    return canonical(base)


def decompress_module(path: str, data: bytes) -> bytes:
    """The ELF image of a possibly compressed module (.ko.xz, .ko.zst, .ko.gz)."""
    try:
        if path.endswith(".xz"):
            return lzma.decompress(data)
        if path.endswith(".gz"):
            return gzip.decompress(data)
    except (lzma.LZMAError, OSError, EOFError) as exc:
        raise KernelError(f"{path} is not a valid compressed module: {exc}") from exc
    if path.endswith(".zst"):
        return zstd_decompress(data, what=path)
    return data


def zstd_decompress(data: bytes, *, what: str) -> bytes:
    """Python 3.11 has no zstd; the `zstd` program does it."""
    try:
        proc = subprocess.run(["zstd", "-dcq"], input=data, capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise KernelError(f"{what} is zstd-compressed and the zstd program is missing",
                          hint="apt-get install zstd") from exc
    if proc.returncode != 0 and not proc.stdout:
        raise KernelError(f"zstd could not decompress {what}: "
                          f"{proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def modinfo(elf: bytes, *, what: str = "module") -> dict[str, str]:
    """The key=value strings of an ELF object's `.modinfo` section (first value wins)."""
    if elf[:4] != b"\x7fELF" or len(elf) < 64:
        raise KernelError(f"{what} is not an ELF object")
    is64 = elf[4] == 2
    endian = "<" if elf[5] == 1 else ">"
    try:
        if is64:
            shoff, = struct.unpack_from(endian + "Q", elf, 0x28)
            shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", elf, 0x3A)
        else:
            shoff, = struct.unpack_from(endian + "I", elf, 0x20)
            shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", elf, 0x2E)

        def section(i: int) -> tuple[int, int, int]:
            base = shoff + i * shentsize
            if is64:
                name, _, _, _, off, size = struct.unpack_from(endian + "IIQQQQ", elf, base)
            else:
                name, _, _, _, off, size = struct.unpack_from(endian + "IIIIII", elf, base)
            return name, off, size

        _, str_off, str_size = section(shstrndx)
        names = elf[str_off:str_off + str_size]
        for i in range(shnum):
            name_off, off, size = section(i)
            if names[name_off:names.find(b"\0", name_off)] == b".modinfo":
                info: dict[str, str] = {}
                for item in elf[off:off + size].split(b"\0"):
                    key, sep, value = item.decode(errors="replace").partition("=")
                    if sep:
                        info.setdefault(key, value)
                return info
    except struct.error as exc:
        raise KernelError(f"{what} has a truncated ELF header: {exc}") from exc
    return {}


def module_info(rel_path: str, elf: bytes) -> ModuleInfo:
    info = modinfo(elf, what=rel_path)
    name = canonical(info.get("name") or module_name_of(rel_path))
    deps = tuple(canonical(d) for d in info.get("depends", "").split(",") if d)
    return ModuleInfo(name, rel_path, deps)


class _TreeModules(Mapping[str, ModuleInfo]):
    """Modules of an extracted tree, each .modinfo read only when asked for.

    A distribution kernel ships thousands of modules; an initramfs needs about ten.
    """

    def __init__(self, modules_dir: Path) -> None:
        self._dir = modules_dir
        self._paths: dict[str, str] = {}
        for path in sorted(modules_dir.rglob("*.ko*")):
            rel = path.relative_to(modules_dir).as_posix()
            if rel.endswith(MODULE_SUFFIXES):
                self._paths.setdefault(module_name_of(rel), rel)
        self._parsed: dict[str, ModuleInfo] = {}

    def __getitem__(self, name: str) -> ModuleInfo:
        if name not in self._parsed:
            rel = self._paths[name]
            data = (self._dir / rel).read_bytes()
            self._parsed[name] = module_info(rel, decompress_module(rel, data))
        return self._parsed[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


def scan_tree(modules_dir: Path) -> Mapping[str, ModuleInfo]:
    """name -> ModuleInfo for an extracted lib/modules/<release> tree.

    modules.dep is used when present (depmod's answer); otherwise each module's
    .modinfo is read, lazily.
    """
    dep_file = modules_dir / "modules.dep"
    if dep_file.is_file():
        return parse_modules_dep(dep_file.read_text())
    return _TreeModules(modules_dir)


def parse_modules_dep(text: str) -> dict[str, ModuleInfo]:
    """depmod's `path: dep-path dep-path ...` lines."""
    found: dict[str, ModuleInfo] = {}
    for line in text.splitlines():
        path, sep, deps = line.partition(":")
        if not sep:
            continue
        name = module_name_of(path.strip())
        found[name] = ModuleInfo(name, path.strip(),
                                 tuple(module_name_of(d) for d in deps.split()))
    return found


def builtin_names(text: str) -> set[str]:
    """Module names from modules.builtin (`kernel/.../foo.ko` per line)."""
    return {module_name_of(line.strip()) for line in text.splitlines() if line.strip()}


def load_order(wanted: Iterable[str], modules: Mapping[str, ModuleInfo],
               builtin: Iterable[str] = ()) -> list[ModuleInfo]:
    """Every wanted module and its dependencies, each after everything it depends on.

    Depth-first, dependencies in name order, wanted modules in the order given, so the
    result is the same every time. Built-in modules need no loading and are left out.
    """
    built = {canonical(b) for b in builtin}
    order: list[ModuleInfo] = []
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str, needed_by: str | None) -> None:
        if name in done or name in built:
            return
        if name in path:
            cycle = " -> ".join([*path[path.index(name):], name])
            raise KernelError(f"module dependency cycle: {cycle}")
        info = modules.get(name)
        if info is None:
            by = f" (needed by {needed_by})" if needed_by else ""
            raise KernelError(f"module {name}{by} is neither shipped nor built in",
                              hint="use a kernel package that has it, or build it in")
        path.append(name)
        for dep in sorted(info.depends):
            visit(dep, name)
        path.pop()
        done.add(name)
        order.append(info)

    for w in wanted:
        visit(canonical(w), None)
    return order


def module_load_order(modules_dir: Path, release: str, wanted: list[str]) -> list[Path]:
    """The .ko files to load, in order, dependencies included (for the initramfs).

    `modules_dir` is an extracted /usr/lib/modules/<release>; `release` is checked
    against its name so a tree of another kernel is not used by mistake.
    """
    if not modules_dir.is_dir():
        raise KernelError(f"{modules_dir} is not a directory of kernel modules",
                          hint="point at the kernel's lib/modules/<release>")
    if modules_dir.name != release:
        raise KernelError(f"{modules_dir} holds modules for {modules_dir.name}, "
                          f"not for {release}",
                          hint="use the modules directory of the kernel that boots")
    builtin_file = modules_dir / "modules.builtin"
    builtin = builtin_names(builtin_file.read_text()) if builtin_file.is_file() else set()
    order = load_order(wanted, scan_tree(modules_dir), builtin)
    return [modules_dir / m.path for m in order]
