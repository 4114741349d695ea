"""The checker on Debian's real kernels (bookworm, fetched through the mirror)."""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
from pathlib import Path

import pytest

from provision9p.commands import kernel as kernel_cli
from provision9p.errors import KernelError, Provision9pError
from provision9p.kernel import check_kernel, check_package, module_load_order
from provision9p.kernel.config import image_release, read_config
from provision9p.kernel.fragments import fragments_for, merge_fragments

from .helpers import ikconfig_blob

pytestmark = pytest.mark.network

# DESIGN.md: the order that loads Debian 6.1's 9P stack.
DESIGN_ORDER = ("virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
                "virtio_pci", "virtio_mmio", "9pnet", "9pnet_virtio", "netfs", "fscache", "9p")


def _boot_file(tree: Path, prefix: str) -> Path:
    found = sorted((tree / "boot").glob(prefix + "*"))
    assert len(found) == 1, found
    return found[0]


def test_debian_amd64_needs_an_initramfs(amd64_deb: Path) -> None:
    report = check_kernel(amd64_deb)
    assert report.verdict == "initramfs"
    assert report.modules == DESIGN_ORDER
    assert report.missing == () and report.arch == "x86_64"
    assert report.release.endswith("-amd64") and report.origin == "deb"
    assert "modinfo" in " ".join(report.notes)  # Debian ships no modules.dep


def test_debian_cloud_cannot_boot_9p(cloud_deb: Path) -> None:
    report = check_kernel(cloud_deb)
    assert report.verdict == "unbootable"
    assert {"CONFIG_NET_9P", "CONFIG_9P_FS"} <= set(report.missing)
    assert report.fixes["CONFIG_NET_9P"].name == "9p-root.config"
    assert report.modules == ()


def test_merged_fragments_make_everything_builtin(amd64_tree: Path, tmp_path: Path) -> None:
    debian = _boot_file(amd64_tree, "config-").read_text()
    merged = tmp_path / ".config"
    merged.write_text(merge_fragments(debian, fragments_for("x86_64")))
    report = check_kernel(merged)
    assert (report.verdict, report.modules, report.missing) == ("builtin", (), ())


def test_config_beside_its_modules_and_load_order(amd64_tree: Path) -> None:
    config = _boot_file(amd64_tree, "config-")
    report = check_kernel(config)
    assert report.verdict == "initramfs" and report.modules == DESIGN_ORDER
    release = config.name.removeprefix("config-")
    paths = module_load_order(amd64_tree / "lib/modules" / release, release,
                              list(report.modules))
    assert tuple(p.name.removesuffix(".ko") for p in paths) == DESIGN_ORDER
    assert all(p.is_file() for p in paths)


def test_real_config_gz(amd64_tree: Path, tmp_path: Path) -> None:
    gz = tmp_path / "config.gz"
    gz.write_bytes(gzip.compress(_boot_file(amd64_tree, "config-").read_bytes()))
    report = check_kernel(gz)
    assert report.verdict == "initramfs" and report.origin == "config.gz"
    # no modules seen: the order comes from the data, dependencies not resolved
    assert report.modules == DESIGN_ORDER


def test_debian_image_has_no_ikconfig(amd64_tree: Path) -> None:
    """Debian builds without CONFIG_IKCONFIG, so the image path is tested with a
    synthetic payload inside the real image's setup header (below)."""
    config = _boot_file(amd64_tree, "config-").read_text()
    assert "# CONFIG_IKCONFIG is not set" in config
    image = _boot_file(amd64_tree, "vmlinuz-")
    with pytest.raises(KernelError, match="built without CONFIG_IKCONFIG"):
        check_kernel(image)
    assert image_release(image.read_bytes()) == image.name.removeprefix("vmlinuz-")


def test_ikconfig_in_an_image_with_the_real_config(amd64_tree: Path, tmp_path: Path) -> None:
    image = _boot_file(amd64_tree, "vmlinuz-").read_bytes()
    config = _boot_file(amd64_tree, "config-").read_text()
    # the real setup code and header, then an xz payload (Debian's own kernel
    # compression) of a vmlinux holding the real config between IKCFG markers
    code = b"".join(b"call printk %d\n" % i for i in range(5000)) + b"IKCFG_ST\0"
    payload = lzma.compress(code + ikconfig_blob(config) + code, format=lzma.FORMAT_XZ,
                            check=lzma.CHECK_CRC32)
    fake = tmp_path / "bzImage"
    setup_size = (image[0x1F1] + 1) * 512  # the real-mode setup ends, the payload starts
    fake.write_bytes(image[:setup_size] + payload + b"\0" * 64)
    kc = read_config(fake)
    assert kc.origin == "ikconfig (xz payload)" and kc.text == config
    report = check_kernel(fake)
    assert report.verdict == "initramfs"
    assert report.release == _boot_file(amd64_tree, "vmlinuz-").name.removeprefix("vmlinuz-")


def test_check_package_resolves_the_metapackage(mirror: str, amd64_deb: Path) -> None:
    report = check_package("linux-image-amd64", arch="amd64", suite="bookworm", mirror=mirror)
    assert report.verdict == "initramfs" and report.modules == DESIGN_ORDER
    assert report.source == f"linux-image-amd64 ({amd64_deb.name})"


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The `kernel` stage's commands as provision9p.cli.main runs them."""
    parser = argparse.ArgumentParser(prog="provision9p")
    kernel_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args))
    except Provision9pError as exc:
        code = exc.exit_code
        print(f"error: {exc}")
    return code, capsys.readouterr().out


def test_cli_exit_codes_and_json(amd64_deb: Path, cloud_deb: Path, mirror: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(["kernel", "check", str(amd64_deb), "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["verdict"] == "initramfs"
    assert data["modules"] == list(DESIGN_ORDER) and data["missing"] == []
    code, out = run_cli(["kernel", "check", "--package", "linux-image-cloud-amd64",
                         "--arch", "amd64", "--mirror", mirror, "--json"], capsys)
    data = json.loads(out)
    assert code == 1 and data["verdict"] == "unbootable"
    assert "CONFIG_9P_FS" in data["missing"]
    assert data["fixes"]["CONFIG_9P_FS"].endswith("kernel-configs/9p-root.config")
    code, out = run_cli(["kernel", "check", str(cloud_deb)], capsys)
    assert code == 1 and "verdict  unbootable" in out
    assert "missing  CONFIG_NET_9P" in out and "9p-root.config" in out


def test_cli_errors(tmp_path: Path, mirror: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(["kernel", "check"], capsys)
    assert code == 2 and "exactly one kernel" in out
    code, out = run_cli(["kernel", "check", str(tmp_path / "nope")], capsys)
    assert code == 2 and "does not exist" in out
    code, out = run_cli(["kernel", "check", "--package", "linux-image-no-such-flavour",
                         "--arch", "amd64", "--mirror", mirror], capsys)
    assert code == 1 and "is not in bookworm" in out and "hint:" in out
