"""Debian packages without dpkg: a .deb's members, control data and data.tar.*, and what
a kernel package holds (its config, and the modules it ships with their dependencies).

python-debian (`debian.debfile`, `debian.arfile`) reads the `ar` container, the control
part and xz/gzip/bzip2/plain data parts. What it cannot do well is kept here: a
zstd-compressed data.tar, which python-debian reads whole into memory and decompresses
whole into memory again (hundreds of MB for a kernel), is streamed through the `zstd`
program instead (Python 3.11 has no zstd module); and the safe extraction into a tree.
"""

from __future__ import annotations

import lzma
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from debian.arfile import ArError, ArMember
from debian.debfile import DebError, DebFile

from provision9p.errors import KernelError
from provision9p.kernel.modules import (
    MODULE_SUFFIXES,
    ModuleInfo,
    builtin_names,
    decompress_module,
    module_info,
    parse_modules_dep,
)

AR_MAGIC = b"!<arch>\n"
_CORRUPT_HINT = "delete it from the cache and fetch it again"


@dataclass
class DebKernel:
    """What a linux-image .deb tells about its kernel."""

    config: str = ""
    release: str = ""
    modules: dict[str, ModuleInfo] = field(default_factory=dict)
    builtin: set[str] = field(default_factory=set)
    has_modules_dep: bool = False
    package: str = ""  # from the control data
    version: str = ""


@contextmanager
def open_deb(deb: Path) -> Iterator[DebFile]:
    """The package as python-debian's DebFile, its errors turned into KernelError."""
    try:
        with deb.open("rb") as f:
            if f.read(8) != AR_MAGIC:
                raise KernelError(f"{deb} is not a Debian package (no ar header)",
                                  hint="give a .deb, a kernel config or a kernel image")
        debfile = DebFile(deb)
    except OSError as exc:  # arfile raises OSError for a corrupt member header too
        reason = exc.strerror or str(exc)
        raise KernelError(f"cannot read {deb}: {reason}", hint=_CORRUPT_HINT) from exc
    except (ArError, DebError) as exc:
        raise KernelError(f"{deb} is not a valid Debian package: {exc}",
                          hint="is it really a .deb? If it came from the cache, "
                               + _CORRUPT_HINT) from exc
    try:
        yield debfile
    finally:
        debfile.close()


def ar_members(deb: Path) -> Iterator[tuple[str, int]]:
    """(name, size) of each member of the package's `ar` container, in order."""
    with open_deb(deb) as debfile:
        members: list[ArMember] = debfile.getmembers()
        for m in members:
            yield str(m.name), int(m.size or 0)


def control_fields(deb: Path) -> dict[str, str]:
    """The package's control data (Package, Version, Architecture, Depends...)."""
    with open_deb(deb) as debfile:
        return _control(debfile, deb)


def _control(debfile: DebFile, deb: Path) -> dict[str, str]:
    try:
        return dict(debfile.debcontrol())
    except (DebError, tarfile.TarError, lzma.LZMAError, EOFError, KeyError) as exc:
        raise KernelError(f"{deb}: its control data cannot be read ({exc})",
                          hint=_CORRUPT_HINT) from exc


@contextmanager
def open_data_tar(deb: Path) -> Iterator[tarfile.TarFile]:
    """The package's data.tar.{xz,zst,gz,bz2,} as a tar file to iterate in order."""
    with open_deb(deb) as debfile, _data_tar(debfile, deb) as tar:
        yield tar


@contextmanager
def _data_tar(debfile: DebFile, deb: Path) -> Iterator[tarfile.TarFile]:
    name = next(n for n in debfile.getnames() if n.startswith("data.tar"))
    try:
        if name.endswith(".zst"):
            with _zstd_stream(debfile.getmember(name), deb) as stream, \
                    tarfile.open(fileobj=stream, mode="r|") as tar:
                yield tar
        else:
            yield debfile.data.tgz()
    except (DebError, lzma.LZMAError, tarfile.TarError, EOFError) as exc:
        raise KernelError(f"{deb}: {name} is corrupt ({exc})", hint=_CORRUPT_HINT) from exc


@contextmanager
def _zstd_stream(member: ArMember, deb: Path) -> Iterator[IO[bytes]]:
    """Decompress a member through the `zstd` program, fed from a thread."""
    if shutil.which("zstd") is None:
        raise KernelError(f"{deb} holds a zstd-compressed data.tar and zstd is missing",
                          hint="apt-get install zstd")
    proc = subprocess.Popen(["zstd", "-dcq"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None

    def pump() -> None:
        assert proc.stdin is not None
        try:
            while chunk := member.read(1 << 20):
                proc.stdin.write(chunk)
        except BrokenPipeError:
            pass
        finally:
            proc.stdin.close()

    feeder = threading.Thread(target=pump, daemon=True)
    feeder.start()
    try:
        yield proc.stdout
    finally:
        proc.stdout.close()
        proc.wait()
        feeder.join()


_deb_memo: dict[tuple[str, int, int], DebKernel] = {}


def read_kernel_deb(deb: Path) -> DebKernel:
    """One pass over a linux-image .deb: its boot/config-*, its modules and their
    `depends=` (from each .ko's .modinfo), modules.builtin and modules.dep if any.

    Reading a distribution kernel takes seconds (xz over ~4,000 modules), so the answer
    is kept for the process, keyed by the file's identity."""
    st = deb.stat()
    key = (str(deb.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _deb_memo:
        _deb_memo[key] = _read_kernel_deb(deb)
    return _deb_memo[key]


def _read_kernel_deb(deb: Path) -> DebKernel:
    info = DebKernel()
    dep_text = ""
    with open_deb(deb) as debfile:
        control = _control(debfile, deb)
        info.package, info.version = control.get("Package", ""), control.get("Version", "")
        with _data_tar(debfile, deb) as tar:
            for m in tar:
                name = str(m.name).removeprefix("./")
                if not m.isfile():
                    continue
                parts = name.split("/")
                if len(parts) == 2 and parts[0] == "boot" and parts[1].startswith("config-"):
                    info.config = _read(tar, m).decode(errors="replace")
                    info.release = parts[1].removeprefix("config-")
                    continue
                if "modules" not in parts or len(parts) < 4:
                    continue
                i = parts.index("modules")
                rel = "/".join(parts[i + 2:])
                if name.endswith(MODULE_SUFFIXES):
                    mod = module_info(rel, decompress_module(rel, _read(tar, m)))
                    info.modules.setdefault(mod.name, mod)
                elif rel == "modules.builtin":
                    info.builtin = builtin_names(_read(tar, m).decode(errors="replace"))
                elif rel == "modules.dep":
                    dep_text = _read(tar, m).decode(errors="replace")
    if dep_text:
        # depmod's view wins over .modinfo when the package has it.
        info.modules.update(parse_modules_dep(dep_text))
        info.has_modules_dep = True
    if not info.config:
        raise KernelError(f"{deb} has no boot/config-* file",
                          hint="is it a linux-image package (not a metapackage)?")
    return info


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    return f.read() if f is not None else b""


def extract_deb(deb: Path, dest: Path) -> None:
    """Extract a .deb's files into `dest`, keeping symlinks, modes and (as root) owners.

    Members that would land outside `dest` (absolute or `..` names, or a path through a
    symlink that leads out) are refused.
    """
    dest.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(dest)

    def inside(path: str) -> bool:
        real = os.path.realpath(os.path.join(root, path))
        return real == root or real.startswith(root + os.sep)

    with open_data_tar(deb) as tar:
        for m in tar:
            raw = str(m.name)  # python-debian's names compare equal with or without "./"
            name = raw.removeprefix("./").lstrip("/") if raw != "./" else "."
            if raw.startswith("/") or ".." in Path(name).parts:
                raise KernelError(f"{deb}: refusing the member {raw!r} (leaves the tree)")
            if not inside(os.path.dirname(name)) or (m.islnk() and not inside(m.linkname)):
                raise KernelError(f"{deb}: refusing {raw!r}: it leads out of {dest}")
            m.name = name
            target = os.path.join(root, name)
            if os.path.islink(target) and not m.isdir():
                os.unlink(target)  # replace a link, as dpkg does; never write through it
            if m.islnk():
                m.linkname = m.linkname.removeprefix("./")
            try:
                # members are checked above; Debian 12's python3.11 (3.11.2) predates
                # extract's `filter` (3.11.4) and behaves as fully_trusted without it
                extra = {"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") else {}
                tar.extract(m, root, set_attrs=True, **extra)  # type: ignore[arg-type]
            except OSError as exc:
                raise KernelError(f"extracting {m.name} from {deb} failed: {exc}",
                                  hint="check free space and permissions at " + str(dest)
                                  ) from exc
