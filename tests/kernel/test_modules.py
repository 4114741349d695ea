"""Module dependencies from .modinfo and modules.dep, and the load order."""

from __future__ import annotations

import lzma
import shutil
import subprocess
from pathlib import Path

import pytest

from provision9p.errors import KernelError
from provision9p.kernel import module_load_order
from provision9p.kernel.modules import ModuleInfo, load_order, modinfo, module_info

from .helpers import make_ko

# The 6.1 dependencies as Debian's modules declare them (read from the real .deb).
DEBIAN_DEPS = {
    "virtio_ring": [], "virtio": [], "virtio_pci_legacy_dev": [],
    "virtio_pci_modern_dev": [],
    "virtio_pci": ["virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio"],
    "9pnet": [], "9pnet_virtio": ["virtio", "9pnet", "virtio_ring"],
    "netfs": [], "fscache": ["netfs"], "9p": ["9pnet", "fscache", "netfs"],
}
DESIGN_ORDER = ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
                "virtio_pci", "9pnet", "9pnet_virtio", "netfs", "fscache", "9p"]
# What the x86_64 fragments ask for, in their order.
WANTED = ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
          "virtio_pci", "9pnet", "9pnet_virtio", "netfs", "fscache", "9p"]


def test_modinfo_of_little_and_big_endian_elf() -> None:
    assert modinfo(make_ko("9pnet_virtio", ["virtio", "9pnet"]))["depends"] == "virtio,9pnet"
    info = module_info("kernel/x/virtio-rng.ko", make_ko("virtio-rng", [], big_endian=True))
    assert info == ModuleInfo("virtio_rng", "kernel/x/virtio-rng.ko", ())
    with pytest.raises(KernelError, match="not an ELF"):
        modinfo(b"nope" * 20)


def test_order_puts_dependencies_first_whatever_is_asked() -> None:
    mods = {n: ModuleInfo(n, f"{n}.ko", tuple(d)) for n, d in DEBIAN_DEPS.items()}
    assert [m.name for m in load_order(WANTED, mods)] == DESIGN_ORDER
    # only the top modules asked for: their dependencies still come before them
    order = [m.name for m in load_order(["9p", "9pnet_virtio"], mods)]
    assert order == ["9pnet", "netfs", "fscache", "9p", "virtio", "virtio_ring", "9pnet_virtio"]
    assert [m.name for m in load_order(["9p"], mods, builtin=["fscache", "netfs"])] == [
        "9pnet", "9p"]


def test_order_errors() -> None:
    mods = {"a": ModuleInfo("a", "a.ko", ("b",)), "b": ModuleInfo("b", "b.ko", ("a",))}
    with pytest.raises(KernelError, match="cycle: a -> b -> a"):
        load_order(["a"], mods)
    with pytest.raises(KernelError, match=r"module c \(needed by x\)") as exc:
        load_order(["x"], {"x": ModuleInfo("x", "x.ko", ("c",))})
    assert exc.value.hint


def _tree(tmp: Path, compress: str = "") -> Path:
    root = tmp / "6.1.0-test"
    for name, deps in DEBIAN_DEPS.items():
        sub = "fs" if name in ("9p", "netfs", "fscache") else "drivers"
        path = root / "kernel" / sub / f"{name}.ko"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = make_ko(name, deps)
        if compress == "xz":
            path = path.with_name(path.name + ".xz")
            data = lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
        elif compress == "zst":
            path = path.with_name(path.name + ".zst")
            data = subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True,
                                  check=True).stdout
        path.write_bytes(data)
    return root


@pytest.mark.parametrize("compress", ["", "xz", "zst"])
def test_module_load_order_on_a_tree(tmp_path: Path, compress: str) -> None:
    if compress == "zst" and shutil.which("zstd") is None:
        pytest.fail("zstd is required (apt-get install zstd)")
    root = _tree(tmp_path, compress)
    got = module_load_order(root, "6.1.0-test", WANTED)
    assert [p.name.split(".")[0] for p in got] == DESIGN_ORDER
    assert all(p.is_file() and p.is_relative_to(root) for p in got)
    # asked for the top modules only, each still comes after what it depends on
    names = [p.name.split(".")[0] for p in
             module_load_order(root, "6.1.0-test", ["virtio_pci", "9pnet_virtio", "9p"])]
    assert sorted(names) == sorted(DESIGN_ORDER)
    for name, deps in DEBIAN_DEPS.items():
        assert all(names.index(d) < names.index(name) for d in deps)


def test_module_load_order_prefers_modules_dep(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    # depmod's answer wins over .modinfo: here it says 9p needs only 9pnet
    (root / "modules.dep").write_text("kernel/fs/9p.ko: kernel/drivers/9pnet.ko\n"
                                      "kernel/drivers/9pnet.ko:\n")
    (root / "modules.builtin").write_text("kernel/fs/netfs.ko\n")
    got = module_load_order(root, "6.1.0-test", ["9p", "netfs"])
    assert [p.name for p in got] == ["9pnet.ko", "9p.ko"]


def test_module_load_order_refuses_another_release(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    with pytest.raises(KernelError, match=r"not for 6\.2\.0"):
        module_load_order(root, "6.2.0", ["9p"])
    with pytest.raises(KernelError, match=r"neither shipped"):
        (root / "kernel/fs/netfs.ko").unlink()
        module_load_order(root, "6.1.0-test", ["9p"])
