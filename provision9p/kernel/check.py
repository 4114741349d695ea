"""The verdict on a guest kernel: can it mount a 9P root, and what does it need for it?

builtin    every needed option is =y: boot with root=<tag> rootfstype=9p, no initramfs
initramfs  all there, but some as modules: an initramfs loads `modules`, in that order
unbootable something is missing: `missing` names it, `fixes` the fragment that adds it

The requirements are the kernel-configs/ fragments; the checker reads the kernel's
own configuration (and, when it can see them, its modules) and checks the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from provision9p.errors import KernelError
from provision9p.kernel.config import KernelConfig, read_config
from provision9p.kernel.fragments import (
    Requirement,
    canonical_arch,
    parse_config,
    requirements_for,
)
from provision9p.kernel.modules import ModuleInfo, builtin_names, canonical, load_order, scan_tree

Verdict = Literal["builtin", "initramfs", "unbootable"]


@dataclass(frozen=True)
class KernelReport:
    verdict: Verdict
    release: str
    missing: tuple[str, ...]  # option names (CONFIG_...) the kernel lacks
    modules: tuple[str, ...]  # modules to load from the initramfs, in load order
    fixes: Mapping[str, Path] = field(default_factory=dict)  # option -> fragment
    arch: str = ""
    source: str = ""
    origin: str = ""  # how the configuration was read
    notes: tuple[str, ...] = ()
    # `when: optional` options it lacks: what some machine types need (CONFIG_VIRTIO_MMIO
    # for microvm), so the lab's machine decides whether this is a problem
    lacking_optional: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict, "release": self.release, "arch": self.arch,
            "missing": list(self.missing), "modules": list(self.modules),
            "fixes": {k: str(v) for k, v in self.fixes.items()},
            "source": self.source, "origin": self.origin, "notes": list(self.notes),
            "lacking_optional": list(self.lacking_optional),
        }


def config_arch(config: Mapping[str, str]) -> str:
    """The guest arch a configuration was built for (QEMU's name)."""
    if config.get("CONFIG_X86_64") == "y":
        return "x86_64"
    if config.get("CONFIG_ARM64") == "y":
        return "aarch64"
    if config.get("CONFIG_S390") == "y":
        return "s390x"
    raise KernelError("cannot tell the kernel's architecture from its configuration "
                      "(none of CONFIG_X86_64, CONFIG_ARM64, CONFIG_S390 is set)",
                      hint="provision9p guests are x86_64, aarch64 or s390x")


def check_kernel(source: Path, *, arch: str | None = None) -> KernelReport:
    """Check any kernel source: .config, config.gz, /boot/config-*, an image, a .deb.

    The arch comes from the configuration unless given. Modules are looked for in the
    .deb, or in lib/modules/<release> beside a /boot/config-<release> in a root tree.
    """
    kc = read_config(source)
    return evaluate(kc, source=str(source), arch=arch,
                    modules_dir=_modules_beside(source, kc.release))


def check_package(name: str, *, arch: str, suite: str, mirror: str) -> KernelReport:
    """Fetch a Debian linux-image package (metapackages resolve) and check it.

    `arch` is the Debian name (amd64, arm64, s390x); QEMU's names are accepted too."""
    from provision9p.host.mirror import fetch_package

    debian_arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(arch, arch)
    deb = fetch_package(name, arch=debian_arch, suite=suite, mirror=mirror)
    return replace(check_kernel(deb, arch=arch), source=f"{name} ({deb.name})")


def _modules_beside(source: Path, release: str) -> Path | None:
    """<root>/usr/lib/modules/<release> for <root>/boot/config-<release>."""
    if not release or source.parent.name != "boot":
        return None
    for lib in ("usr/lib/modules", "lib/modules"):
        candidate = source.parent.parent / lib / release
        if candidate.is_dir():
            return candidate
    return None


def evaluate(kc: KernelConfig, *, source: str = "", arch: str | None = None,
             modules_dir: Path | None = None) -> KernelReport:
    """The verdict for a configuration read by read_config."""
    config = parse_config(kc.text)
    if not config:
        raise KernelError(f"{source or 'the kernel'}: the configuration has no options",
                          hint="is it really a kernel .config?")
    arch = canonical_arch(arch) if arch else config_arch(config)
    reqs = requirements_for(arch)
    notes: list[str] = []
    missing: list[str] = []
    fixes: dict[str, Path] = {}
    wanted: list[str] = []
    lacking = tuple(r.option for r in reqs
                    if r.when == "optional" and config.get(r.option) not in ("y", "m"))
    for r in reqs:
        state = _satisfied(r, config.get(r.option))
        if state == "missing":
            missing.append(r.option)
            fixes[r.option] = r.fragment
        elif state == "module" and r.when != "late":
            wanted.extend(canonical(m) for m in r.modules)

    shipped, builtin, how = _module_info(kc, modules_dir)
    modules: list[str] = wanted
    if shipped is not None and wanted and not missing:
        try:
            modules = [m.name for m in load_order(wanted, shipped, builtin)]
            notes.append(f"module order from {how} ({len(shipped)} modules shipped)")
        except KernelError as exc:
            # A needed module that the kernel does not ship: the config lies or the
            # package is incomplete; either way it cannot boot.
            notes.append(exc.message)
            absent = _absent(wanted, shipped, builtin)
            for r in reqs:
                if any(canonical(m) in absent for m in r.modules):
                    missing.append(r.option)
                    fixes[r.option] = r.fragment
            if not missing:
                raise
    elif wanted and not missing:
        notes.append("module order from the kernel-configs data only: no modules seen, "
                     "dependencies not resolved (module_load_order does that)")
    if missing:
        return KernelReport("unbootable", kc.release, tuple(missing), (), fixes,
                            arch, source, kc.origin, tuple(notes), lacking)
    verdict: Verdict = "initramfs" if modules else "builtin"
    return KernelReport(verdict, kc.release, (), tuple(modules), {}, arch, source,
                        kc.origin, tuple(notes), lacking)


def _satisfied(r: Requirement, value: str | None) -> str:
    """ok, module (=m where a module is allowed) or missing."""
    if r.value == "n":
        return "ok" if value in (None, "n") else "missing"
    if r.when in ("selected", "optional"):
        return "module" if value == "m" and r.modules else "ok"
    if value == r.value:
        return "ok"
    if r.value == "y" and value == "m" and r.modules:
        return "module"
    return "missing"


def _module_info(kc: KernelConfig, modules_dir: Path | None
                 ) -> tuple[Mapping[str, ModuleInfo] | None, set[str], str]:
    if kc.deb is not None and kc.deb.modules:
        how = "modules.dep" if kc.deb.has_modules_dep else "each module's .modinfo"
        return kc.deb.modules, kc.deb.builtin, how
    if modules_dir is not None:
        builtin_file = modules_dir / "modules.builtin"
        builtin = builtin_names(builtin_file.read_text()) if builtin_file.is_file() else set()
        how = "modules.dep" if (modules_dir / "modules.dep").is_file() else ".modinfo"
        return scan_tree(modules_dir), builtin, f"{how} in {modules_dir}"
    return None, set(), ""


def _absent(wanted: list[str], shipped: Mapping[str, ModuleInfo], builtin: set[str]
            ) -> set[str]:
    return {w for w in wanted if w not in shipped and w not in builtin}


def describe(report: KernelReport) -> str:
    """The report as a few lines for people."""
    lines = [f"kernel   {report.source}", f"release  {report.release or '(unknown)'}",
             f"arch     {report.arch}", f"read as  {report.origin}",
             f"verdict  {report.verdict}"]
    if report.verdict == "builtin":
        lines.append("         9P root mounts without an initramfs")
    if report.modules:
        lines.append("modules  " + " ".join(report.modules) + "   (initramfs load order)")
    for opt in report.missing:
        lines.append(f"missing  {opt:<28} fix: merge {report.fixes[opt]}")
    lines += [f"note     {n}" for n in report.notes]
    return "\n".join(lines)
