"""Golden argv files for the QEMU command, and proof that QEMU parses our escaping."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from provision9p.boot.libvirt_xml import libvirt_domain_xml
from provision9p.boot.qemu_argv import TCG_CPUS, BootFiles, qemu_argv, qemu_opts_escape
from provision9p.lab import validate_text
from provision9p.lab.model import GuestSpec

GOLDEN = Path(__file__).parent / "golden"
BASE = Path("/srv/lab")  # validation does not need it to exist; keeps golden paths stable
RUN = BootFiles(kernel=Path("/srv/run/vmlinuz"), initrd=Path("/srv/run/initrd.gz"),
                ssh_port=10022, console_log=Path("/srv/run/console.log"),
                qmp_socket=Path("/srv/run/qmp.sock"), pidfile=Path("/srv/run/qemu.pid"),
                accel="tcg")

LABS = {
    "default-x86_64": "guests:\n  web:\n",
    "every-share-option": """
        guests:
          web:
            kernel: {cmdline: 'quiet loglevel=3'}
            shares:
              - path: data
                mount_tag: data
                mount: /mnt/data
                security_model: mapped-file
                readonly: true
                fmode: '0640'
                dmode: '0750'
                multidevs: remap
                writeout: immediate
              - path: 'odd, dir=x'
                mount_tag: odd
                mount: /mnt/odd
                security_model: none
        """,
    "libvirt": """
        allow_passthrough: true
        guests:
          web:
            shares:
              - {path: data, mount_tag: data, mount: /mnt/data, security_model: passthrough,
                 readonly: true}
              - {path: 'odd, dir=x', mount_tag: odd, mount: /mnt/odd, security_model: none}
        """,
    "aarch64-virt": "guests:\n  web:\n    arch: aarch64\n",
    "microvm": "guests:\n  web:\n    machine: microvm\n",
    "s390x-ccw": "guests:\n  web:\n    arch: s390x\n",
}


def guest(name: str) -> GuestSpec:
    return validate_text(textwrap.dedent(LABS[name]), "lab.yml", BASE).guest("web")


@pytest.mark.parametrize("name", sorted(LABS))
def test_argv_golden(name: str) -> None:
    argv = qemu_argv(guest(name), RUN)
    path = GOLDEN / f"{name}.argv"
    text = "".join(f"{json.dumps(a, ensure_ascii=False)}\n" for a in argv)
    if os.environ.get("PROVISION9P_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_argv_has_no_forbidden_parts() -> None:
    for name in sorted(LABS):
        argv = qemu_argv(guest(name), RUN)
        assert "-daemonize" not in argv
        nets = [argv[i + 1] for i, a in enumerate(argv) if a == "-netdev"]
        assert nets == ["user,id=net0,hostfwd=tcp:127.0.0.1:10022-:22"]


def test_escape() -> None:
    assert qemu_opts_escape("/a,b=c d/é") == "/a,,b=c d/é"
    assert qemu_opts_escape(",,") == ",,,,"


def test_libvirt_xml_golden() -> None:
    text = libvirt_domain_xml(guest("libvirt"), RUN)
    root = ET.fromstring(text)
    assert root.tag == "domain"
    fss = root.findall("devices/filesystem")
    assert [fs.get("accessmode") for fs in fss] == ["mapped", "passthrough", "squash"]
    assert [fs.find("target").get("dir") for fs in fss] == ["rootfs", "data", "odd"]  # type: ignore[union-attr]
    assert fss[1].find("readonly") is not None
    path = GOLDEN / "libvirt.xml"
    if os.environ.get("PROVISION9P_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_aarch64_under_tcg_gets_a_plain_core() -> None:
    """max is slow under TCG on aarch64 (pointer authentication); KVM still gets host."""
    arm = guest("aarch64-virt")
    argv = qemu_argv(arm, RUN)
    assert argv[argv.index("-cpu") + 1] == TCG_CPUS["aarch64"] == "cortex-a57"
    kvm = qemu_argv(arm, dataclasses.replace(RUN, accel="kvm"))
    assert kvm[kvm.index("-cpu") + 1] == "host"
    cpu = ET.fromstring(libvirt_domain_xml(arm, RUN)).find("cpu")
    assert cpu is not None and cpu.get("mode") == "custom"
    assert cpu.findtext("model") == "cortex-a57"
    x86 = qemu_argv(guest("default-x86_64"), RUN)
    assert x86[x86.index("-cpu") + 1] == "max"


QEMU = shutil.which("qemu-system-x86_64")


def _fsdev_probe(path_opt: str) -> subprocess.CompletedProcess[str]:
    """Start QEMU with one fsdev and no guest; it exits at once via QMP `quit`."""
    # -S: the guest never runs; the 9P device opens the export path when it is realized.
    argv = [str(QEMU), "-machine", "pc", "-accel", "tcg", "-nodefaults", "-no-user-config",
            "-display", "none", "-S", "-qmp", "stdio",
            "-fsdev", f"local,id=fs0,{path_opt},security_model=none",
            "-device", "virtio-9p-pci,fsdev=fs0,mount_tag=t"]
    cmds = '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n'
    return subprocess.run(argv, input=cmds, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed")
def test_qemu_parses_escaped_weird_path(tmp_path: Path) -> None:
    weird = tmp_path / "a,b c=d é"
    # The realized 9P device opens the path and names it when it is missing ("failed to
    # open '<path>'"): the whole path coming back proves the escaping round-trips.
    missing = _fsdev_probe(f"path={qemu_opts_escape(str(weird))}")
    assert missing.returncode != 0
    assert str(weird) in missing.stderr, missing.stderr
    weird.mkdir()
    ok = _fsdev_probe(f"path={qemu_opts_escape(str(weird))}")
    assert ok.returncode == 0, ok.stderr
    # unescaped, the comma splits the value: QEMU sees path=".../a" and an option "b c"
    bad = _fsdev_probe(f"path={weird}")
    assert bad.returncode != 0
    assert "Invalid parameter 'b c'" in bad.stderr, bad.stderr


S390X_LAB = """
    guests:
      web:
        arch: s390x
        shares:
          - {path: data, mount_tag: data, mount: /mnt/data}
    """


def test_s390x_devices_are_all_on_the_channel_subsystem() -> None:
    # s390-ccw-virtio has no PCI slot for a NIC: every device must be a -ccw one.
    g = validate_text(textwrap.dedent(S390X_LAB), "lab.yml", BASE).guest("web")
    argv = qemu_argv(g, RUN)
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    assert [d.split(",")[0] for d in devices] == ["virtio-9p-ccw", "virtio-9p-ccw",
                                                  "virtio-net-ccw"]
    assert not any("romfile" in d for d in devices)


S390X = shutil.which("qemu-system-s390x")


@pytest.mark.skipif(S390X is None, reason="qemu-system-s390x (qemu-system-misc) is missing")
def test_qemu_s390x_realizes_our_devices(tmp_path: Path) -> None:
    """The argv's machine and devices as QEMU 7.2 builds them, with no kernel to boot (-S)."""
    g = validate_text(textwrap.dedent(S390X_LAB), "lab.yml", tmp_path).guest("web")
    for share in g.all_shares:
        share.path.mkdir(parents=True, exist_ok=True)
    argv = qemu_argv(g, RUN)
    keep: list[str] = []
    drop = {"-kernel", "-initrd", "-append", "-chardev", "-serial", "-qmp", "-pidfile"}
    i = 0
    while i < len(argv):
        if argv[i] in drop:
            i += 2
            continue
        keep.append(argv[i])
        i += 1
    keep[0] = str(S390X)
    cmds = '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n'
    res = subprocess.run([*keep, "-S", "-qmp", "stdio"], input=cmds,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_a_share_spanning_file_systems_gets_remap_unless_the_lab_says() -> None:
    """At boot (BootFiles.spanning, read from the mount table), a share with another file
    system mounted inside gets multidevs=remap; a share's own `multidevs` wins."""
    web = validate_text(textwrap.dedent("""
        guests:
          web:
            shares:
              - {path: a, mount_tag: a, mount: /mnt/a}
              - {path: w, mount_tag: w, mount: /mnt/w, multidevs: warn}
              - {path: q, mount_tag: q, mount: /mnt/q}
        """), "lab.yml", BASE).guest("web")
    argv = qemu_argv(web, dataclasses.replace(RUN, spanning=frozenset({"a", "w"})))
    fsdevs = {a.split("path=/srv/lab/")[1].split(",")[0]: a for a in argv
              if "path=/srv/lab/" in a}
    assert "multidevs=remap" in fsdevs["a"]
    assert "multidevs=warn" in fsdevs["w"]  # the lab said
    assert "multidevs" not in fsdevs["q"]  # one file system: QEMU's default, as before
    xml = libvirt_domain_xml(web, dataclasses.replace(RUN, spanning=frozenset({"a"})))
    found = {fs.find("target").get("dir"): fs.get("multidevs")  # type: ignore[union-attr]
             for fs in ET.fromstring(xml).iter("filesystem")}
    assert (found["a"], found["w"], found["q"]) == ("remap", "warn", None)


@pytest.mark.tree
def test_spanning_shares_reads_the_mount_table(tmp_path: Path) -> None:
    from provision9p.boot.qemu_argv import spanning_shares

    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs: it needs root, as CI has")
    for d in ("plain", "span/inner"):
        (tmp_path / d).mkdir(parents=True)
    web = validate_text(textwrap.dedent("""
        guests:
          web:
            shares:
              - {path: plain, mount_tag: plain, mount: /mnt/p}
              - {path: span, mount_tag: span, mount: /mnt/s}
        """), "lab.yml", tmp_path).guest("web")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(tmp_path / "span/inner")], check=True)
    try:
        assert spanning_shares(web) == {"span"}
    finally:
        subprocess.run(["umount", str(tmp_path / "span/inner")], check=True)
    assert spanning_shares(web) == frozenset()
