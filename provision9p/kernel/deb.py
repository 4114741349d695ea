"""Debian packages without dpkg: the `ar` container, its data.tar.*, and what a kernel
package holds (its config, and the modules it ships with their dependencies).

dpkg-deb may be missing on the host (or be too old for zstd members); this needs only
Python and, for data.tar.zst, the `zstd` program.
"""

from __future__ import annotations

import io
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
from typing import IO, BinaryIO

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


@dataclass
class DebKernel:
    """What a linux-image .deb tells about its kernel."""

    config: str = ""
    release: str = ""
    modules: dict[str, ModuleInfo] = field(default_factory=dict)
    builtin: set[str] = field(default_factory=set)
    has_modules_dep: bool = False


def ar_members(deb: Path) -> Iterator[tuple[str, int, int]]:
    """(name, offset, size) of each member of an `ar` archive (a .deb is one)."""
    try:
        with deb.open("rb") as f:
            if f.read(8) != AR_MAGIC:
                raise KernelError(f"{deb} is not a Debian package (no ar header)",
                                  hint="give a .deb, a kernel config or a kernel image")
            while True:
                header = f.read(60)
                if len(header) < 60:
                    return
                if header[58:60] != b"`\n":
                    raise KernelError(f"{deb} has a corrupt ar member header",
                                      hint="download the package again")
                name = header[:16].decode(errors="replace").strip().rstrip("/")
                size = int(header[48:58].decode().strip() or 0)
                offset = f.tell()
                yield name, offset, size
                f.seek(offset + size + (size & 1))
    except OSError as exc:
        raise KernelError(f"cannot read {deb}: {exc.strerror}") from exc


class _Slice(io.RawIOBase):
    """A read-only window on part of a file (one ar member)."""

    def __init__(self, f: BinaryIO, offset: int, size: int) -> None:
        self._f, self._left = f, size
        f.seek(offset)

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        n = self._f.readinto(buf[: min(len(buf), self._left)])  # type: ignore[attr-defined]
        self._left -= n
        return int(n)


@contextmanager
def open_data_tar(deb: Path) -> Iterator[tarfile.TarFile]:
    """The package's data.tar.{xz,zst,gz,} as a streaming tar file."""
    member = next(((n, o, s) for n, o, s in ar_members(deb) if n.startswith("data.tar")), None)
    if member is None:
        raise KernelError(f"{deb} has no data.tar member", hint="is it really a .deb?")
    name, offset, size = member
    with deb.open("rb") as f:
        raw = io.BufferedReader(_Slice(f, offset, size), 1 << 20)
        if name.endswith(".zst"):
            with _zstd_stream(raw, deb) as stream, tarfile.open(fileobj=stream,
                                                                mode="r|") as tar:
                yield tar
            return
        try:
            if name.endswith(".xz"):
                with lzma.open(raw) as xz, tarfile.open(fileobj=xz, mode="r|") as tar:
                    yield tar
            elif name in ("data.tar.gz", "data.tar"):
                mode = "r|gz" if name.endswith(".gz") else "r|"
                with tarfile.open(fileobj=raw, mode=mode) as tar:  # type: ignore[call-overload]
                    yield tar
            else:
                raise KernelError(f"{deb}: {name} is compressed in a way not handled",
                                  hint="packages use xz, zstd or gzip")
        except (lzma.LZMAError, tarfile.TarError, EOFError) as exc:
            raise KernelError(f"{deb}: {name} is corrupt ({exc})",
                              hint="delete it from the cache and fetch it again") from exc


@contextmanager
def _zstd_stream(raw: BinaryIO, deb: Path) -> Iterator[IO[bytes]]:
    """Decompress through the `zstd` program, fed from a thread (Python 3.11 has no zstd)."""
    if shutil.which("zstd") is None:
        raise KernelError(f"{deb} holds a zstd-compressed data.tar and zstd is missing",
                          hint="apt-get install zstd")
    proc = subprocess.Popen(["zstd", "-dcq"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None

    def pump() -> None:
        assert proc.stdin is not None
        try:
            shutil.copyfileobj(raw, proc.stdin, 1 << 20)
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
    try:
        with open_data_tar(deb) as tar:
            for m in tar:
                name = m.name.removeprefix("./")
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
    except (lzma.LZMAError, tarfile.TarError, EOFError) as exc:
        raise KernelError(f"{deb} is corrupt ({exc})",
                          hint="delete it from the cache and fetch it again") from exc
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
            name = m.name.removeprefix("./").lstrip("/") if m.name != "./" else "."
            if m.name.startswith("/") or ".." in Path(name).parts:
                raise KernelError(f"{deb}: refusing the member {m.name!r} (leaves the tree)")
            if not inside(os.path.dirname(name)) or (m.islnk() and not inside(m.linkname)):
                raise KernelError(f"{deb}: refusing {m.name!r}: it leads out of {dest}")
            m.name = name
            target = os.path.join(root, name)
            if os.path.islink(target) and not m.isdir():
                os.unlink(target)  # replace a link, as dpkg does; never write through it
            if m.islnk():
                m.linkname = m.linkname.removeprefix("./")
            try:
                tar.extract(m, root, set_attrs=True, filter="fully_trusted")
            except OSError as exc:
                raise KernelError(f"extracting {m.name} from {deb} failed: {exc}",
                                  hint="check free space and permissions at " + str(dest)
                                  ) from exc
