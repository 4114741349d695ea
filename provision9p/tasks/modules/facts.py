"""setup, service_facts and package_facts: facts a task asks for, as Ansible returns them.

Each returns `ansible_facts`; the engine merges them into the guest's facts. setup's are
prefixed `ansible_` as Ansible's setup returns them; service_facts and package_facts
give `services` and `packages`, unprefixed, as Ansible's do.
"""

from __future__ import annotations

import fnmatch
import re
import stat as stat_mod
from typing import Any

from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.tasks.facts import gather_facts, resolve_subset
from provision9p.tasks.facts.offline import resolve
from provision9p.tasks.modules.base import Module, ModuleContext
from provision9p.tasks.modules.spec import P, Spec


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _setup(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    subset = _as_list(args.get("gather_subset")) or ["all"]
    resolve_subset(subset)  # a bad name fails before anything runs
    timeout = args.get("gather_timeout")
    if timeout is not None and not str(timeout).strip().isdigit():
        raise TaskError(f"setup: gather_timeout must be a number, not {timeout!r}")
    if ctx.guest is None:
        raise TaskError("setup: no guest spec was handed to the module",
                        hint="the engine passes ModuleContext(guest=...)")
    # gather_timeout bounds each of Ansible's collectors; here all facts are one command.
    facts = gather_facts(conn, ctx.guest, subset)
    meta: dict[str, Any] = {k: facts.pop(k) for k in ("gather_subset", "module_setup")
                            if k in facts}
    named: dict[str, Any] = {f"ansible_{k}": v for k, v in facts.items()}
    named.update(meta)
    patterns = _as_list(args.get("filter"))
    if patterns and patterns != ["*"]:
        named = {k: v for k, v in named.items() if any(_matches(k, p) for p in patterns)}
    return {"changed": False, "ansible_facts": named}


def _matches(name: str, pattern: str) -> bool:
    """Ansible's filter: the pattern as given, or with `ansible_` put in front."""
    if fnmatch.fnmatch(name, pattern):
        return True
    return not pattern.startswith(("ansible_", "facter", "ohai")) and \
        fnmatch.fnmatch(name, f"ansible_{pattern}")


# --- service_facts --------------------------------------------------------------------

_BAD = ("not-found", "masked", "failed")
_UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system",
              "/usr/lib/systemd/system")


def _service_facts(conn: Connection, args: dict[str, Any], ctx: ModuleContext
                   ) -> dict[str, Any]:
    services = _offline_services(conn) if conn.phase == "tree" else _booted_services(conn)
    if not services:
        return {"changed": False, "skipped": True,
                "msg": "Failed to find any services. This can be due to privileges or "
                       "some other configuration issue."}
    return {"changed": False, "ansible_facts": {"services": services}}


def _booted_services(conn: Connection) -> dict[str, dict[str, Any]]:
    """One round trip: systemd's loaded units, its unit files, then the SysV scripts as
    `service` sees them (Ansible lists all three, systemd's view winning for a name).

    As Ansible: a unit file's state (enabled, static, masked, ...) is the final status;
    a unit file that is not loaded is added, 'inactive' (a template: 'unknown', the state
    Ansible's `systemctl show` of it gives). When listing the unit files fails (it can
    take minutes on a 9P root under TCG: it is bounded here), the loaded units keep the
    active column as their status, as Ansible's do after its warning."""
    res = conn.run(["/bin/sh", "-c",
                    "LC_ALL=C systemctl list-units --no-pager --type service --all --plain "
                    "--no-legend; echo '\037'; "
                    "files=$(LC_ALL=C timeout 120 systemctl list-unit-files --no-pager "
                    "--type service --all --plain --no-legend 2>/dev/null); rc=$?; "
                    "printf '%s\\n\\037%s\\n' \"$files\" \"$rc\"; "
                    # an alias's state is its unit's: one `show` for all of them
                    "aliases=$(printf '%s\\n' \"$files\" | "
                    "awk '$2 == \"alias\" && $1 !~ /@\\./ {print $1}'); "
                    "[ -n \"$aliases\" ] && LC_ALL=C systemctl show --property=ActiveState "
                    "$aliases 2>/dev/null; echo '\037'; "
                    "[ -x /usr/sbin/service ] && LC_ALL=C /usr/sbin/service --status-all "
                    "2>&1"])
    units, _, rest = res.stdout.partition("\037")
    files, _, rest = rest.partition("\037")
    code, _, rest = rest.lstrip("\n").partition("\n")
    shown, _, sysv = rest.partition("\037")
    alias_states = [ln.removeprefix("ActiveState=") for ln in shown.splitlines()
                    if ln.startswith("ActiveState=")]
    services: dict[str, dict[str, Any]] = {}
    for line in sysv.splitlines():
        m = re.match(r"\s*\[ ([+?-]) \]\s+(\S+)", line)
        if m:
            services[m.group(2)] = {"name": m.group(2), "source": "sysv",
                                    "state": "running" if m.group(1) == "+" else "stopped"}
    for line in units.splitlines():
        fields = line.split()
        if len(fields) < 4 or ".service" not in fields[0]:
            continue
        bad = next((b for b in _BAD if b in fields[:-1]), None)
        services[fields[0]] = {"name": fields[0], "source": "systemd",
                               "state": "running" if fields[3] == "running" else "stopped",
                               "status": bad or fields[2]}
    if code.strip() == "0":
        entries = [ln.split()[:2] for ln in files.splitlines()
                   if len(ln.split()) >= 2 and ".service" in ln]
        alias_names = [n for n, st in entries if st == "alias" and "@." not in n]
        # `show` prints one block per name, in the order given
        aliases = (dict(zip(alias_names, alias_states, strict=True))
                   if len(alias_names) == len(alias_states) else {})
        for name, status in entries:
            if name in services:
                services[name]["status"] = status
                continue
            state = "inactive"
            if "@." in name:
                state = "unknown"  # a template: `systemctl show` of it fails
            elif status == "alias":
                state = aliases.get(name, "unknown")
            services[name] = {"name": name, "source": "systemd", "status": status,
                              "state": state}
    return services


def _offline_services(conn: Connection) -> dict[str, dict[str, Any]]:
    """Nothing runs in a tree: every unit is stopped; its status is what its unit file
    and the enablement symlinks say (masked, enabled, static or disabled)."""
    files: dict[str, str] = {}
    masked: set[str] = set()
    wanted: set[str] = set()
    seen: set[str] = set()
    for unit_dir in _UNIT_DIRS:
        base = resolve(conn, unit_dir)  # /lib is a link to usr/lib on a merged-/usr tree
        if base in seen or conn.stat(base) is None:
            continue
        seen.add(base)
        for name in conn.listdir(base):
            path = f"{base}/{name}"
            st = conn.stat(path)
            if st is None:
                continue
            if stat_mod.S_ISDIR(st.mode) and name.endswith((".wants", ".requires")):
                wanted.update(n for n in conn.listdir(path) if n.endswith(".service"))
            elif name.endswith(".service") and "@." not in name:
                if stat_mod.S_ISLNK(st.mode) and conn.readlink(path) == "/dev/null":
                    masked.add(name)
                files.setdefault(name, path)
    services: dict[str, dict[str, Any]] = {}
    for name, path in sorted(files.items()):
        if name in masked:
            status = "masked"
        elif name in wanted:
            status = "enabled"
        else:
            status = "disabled" if _has_install(conn, path) else "static"
        services[name] = {"name": name, "source": "systemd", "state": "stopped",
                          "status": status}
    initd = resolve(conn, "/etc/init.d")
    if conn.stat(initd) is not None:
        for name in conn.listdir(initd):
            if not name.startswith(".") and name not in ("README", "skeleton", "rc", "rcS"):
                services.setdefault(name, {"name": name, "source": "sysv",
                                           "state": "stopped"})
    return services


def _has_install(conn: Connection, path: str) -> bool:
    try:
        text = conn.read_file(path).decode(errors="replace")
    except OSError:
        return False
    return bool(re.search(r"^\[Install\]\s*$", text, re.M))


# --- package_facts --------------------------------------------------------------------

def _package_facts(conn: Connection, args: dict[str, Any], ctx: ModuleContext
                   ) -> dict[str, Any]:
    managers = _as_list(args.get("manager")) or ["auto"]
    unknown = [m for m in managers if m not in ("auto", "apt")]
    if unknown:
        raise TaskError(f"package_facts: manager {', '.join(unknown)} is not supported by "
                        "provision9p", hint="use manager: auto or apt (Debian guests)")
    strategy = args.get("strategy", "first")
    if strategy not in ("first", "all"):
        raise TaskError(f"package_facts: strategy must be first or all, not {strategy!r}")
    return {"changed": False, "ansible_facts": {"packages": installed_packages(conn)}}


def installed_packages(conn: Connection) -> dict[str, list[dict[str, str]]]:
    """dpkg's status file read as it is, the same on the tree and over SSH."""
    status = conn.read_file("/var/lib/dpkg/status").decode(errors="replace")
    origin = _origin(conn)
    out: dict[str, list[dict[str, str]]] = {}
    for para in status.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z0-9-]+): ?(.*)$", para, re.M))
        name = fields.get("Package")
        if not name or not fields.get("Status", "").endswith(" installed"):
            continue
        out.setdefault(name, []).append({
            "name": name, "version": fields.get("Version", ""),
            "arch": fields.get("Architecture", ""), "category": fields.get("Section", ""),
            "origin": origin, "source": "apt"})
    return out


def _origin(conn: Connection) -> str:
    """apt's origin of the installed versions: the Origin of the guest's release files
    (one Debian mirror in a lab tree)."""
    lists = "/var/lib/apt/lists"
    if conn.stat(lists) is None:
        return ""
    for name in sorted(conn.listdir(lists)):
        if name.endswith(("_InRelease", "_Release")):
            head = conn.read_file(f"{lists}/{name}")[:4096].decode(errors="replace")
            m = re.search(r"^Origin: (.+)$", head, re.M)
            if m:
                return m.group(1).strip()
    return ""


MODULES: dict[str, Module] = {
    "setup": Module(_setup, Spec(
        {"gather_subset": P("list", elements="str",
                            help="Ansible's subsets: all, min, hardware, network, virtual, "
                                 "!name"),
         "filter": P("list", elements="str", help="fnmatch patterns of fact names to keep"),
         "gather_timeout": P("int", help="accepted; every fact comes from one command")},
        help="Gather the guest's facts (one command over SSH; the tree's files offline).",
        returns="ansible_facts: the facts, prefixed ansible_",
        unsupported={"fact_path": "local facts (facts.d) are not run"},
        differences="local facts (facts.d) are not run; the clock has whole seconds")),
    "service_facts": Module(_service_facts, Spec(
        {}, help="The guest's services (one systemctl call; unit files offline).",
        returns="ansible_facts.services: {unit: {name, state, status, source}}",
        differences="units that are not loaded are not listed (list-unit-files is "
                    "too slow on a 9P root under TCG); offline every unit is stopped")),
    "package_facts": Module(_package_facts, Spec(
        {"manager": P("list", elements="str", default=["auto"],
                      help="auto or apt (dpkg's status file)"),
         "strategy": P("str", default="first", choices=("first", "all"))},
        help="Installed packages, read from /var/lib/dpkg/status.",
        returns="ansible_facts.packages: {name: [{name, version, arch, source}]}")),
}
