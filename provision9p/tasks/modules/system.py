"""hostname, sysctl and mount: settings that take effect at boot, and now when booted.

In the tree phase nothing runs yet, so these only write their files (/etc/hostname,
sysctl.conf, fstab); the guest applies them as it boots. Over SSH they also apply the
setting to the running guest, as Ansible does.
"""

from __future__ import annotations

from typing import Any

from provision9p.connect.base import Connection
from provision9p.errors import TaskError
from provision9p.tasks.modules.base import (
    Module,
    ModuleContext,
    fstab_escape,
    make_dirs,
    run_checked,
    write_content,
)
from provision9p.tasks.modules.spec import P, Spec


def _hostname(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    name = str(args["name"])
    res = write_content(conn, "/etc/hostname", f"{name}\n".encode(), {}, ctx)
    if res["changed"] and conn.phase == "ssh" and not ctx.check:
        conn.run(["hostname", name])
    return {"changed": res["changed"], "name": name,
            "ansible_facts": {"ansible_hostname": name}}



def _sysctl(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    name = str(args["name"])
    state = args.get("state", "present")
    path = str(args.get("sysctl_file", "/etc/sysctl.conf"))
    value = None if args.get("value") is None else _sysctl_value(args["value"])
    if state == "present" and value is None:
        raise TaskError("sysctl: state=present needs value")
    st = conn.stat(path)
    lines = conn.read_file(path).decode(errors="replace").splitlines() if st else []
    new: list[str] = []
    found = False
    for line in lines:
        key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith(
            ("#", ";")) else None
        if key is not None and key.replace("/", ".") == name:
            if state == "present" and not found:
                new.append(f"{name}={value}")
                found = True
            continue
        new.append(line)
    if state == "present" and not found:
        new.append(f"{name}={value}")
    result: dict[str, Any] = {"changed": False, "name": name, "value": value}
    if new != lines or st is None:
        result = {**write_content(conn, path, ("\n".join(new) + "\n").encode(), {}, ctx),
                  "name": name, "value": value}
    live_differs = False
    if conn.phase == "ssh" and state == "present" and args.get("sysctl_set", False):
        res = conn.run(["sysctl", "-n", name])
        live_differs = res.ok and _sysctl_value(res.stdout) != value
        result["changed"] = result["changed"] or live_differs
    if conn.phase == "ssh" and not ctx.check and state == "present":
        if live_differs:
            run_checked(conn, ["sysctl", "-w", f"{name}={value}"])
        if result["changed"] and args.get("reload", True):
            run_checked(conn, ["sysctl", "-p", path])
    return result


def _sysctl_value(value: Any) -> str:
    """As Ansible reads a sysctl value: booleans (and their words) are 1 and 0."""
    if isinstance(value, bool):
        return "1" if value else "0"
    word = str(value).strip().lower()
    if word in ("yes", "true", "on"):
        return "1"
    if word in ("no", "false", "off"):
        return "0"
    return " ".join(str(value).split())


# Ansible's mount module (ansible.posix.mount): fstab entries and the mount itself.
_MOUNT_STATES = ("mounted", "unmounted", "present", "absent", "remounted")


def _mount(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    path = str(args["path"]).rstrip("/") or "/"
    state = args.get("state")
    if state not in _MOUNT_STATES:
        raise TaskError(f"mount: state must be one of {', '.join(_MOUNT_STATES)}")
    fstab = str(args.get("fstab", "/etc/fstab"))
    result: dict[str, Any] = {"changed": False, "name": path, "state": state}
    entry_changed = False
    if state in ("mounted", "present"):
        if not args.get("src") or not args.get("fstype"):
            raise TaskError(f"mount: state={state} needs src and fstype")
        opts = str(args.get("opts") or "defaults")
        if args.get("boot") is False and "noauto" not in opts.split(","):
            opts += ",noauto"
        fields = [fstab_escape(str(args["src"])), fstab_escape(path), str(args["fstype"]),
                  opts, str(args.get("dump", 0)),
                  str(args.get("passno", 0))]
        result.update(src=fields[0], fstype=fields[2], opts=fields[3])
        entry_changed = _fstab_set(conn, fstab, path, " ".join(fields), ctx, result)
    elif state == "absent":
        entry_changed = _fstab_set(conn, fstab, path, None, ctx, result)
    if conn.phase != "ssh":
        if state == "mounted" and conn.stat(path) is None:
            result["changed"] = True
            if not ctx.check:
                make_dirs(conn, path)
        return result  # mounts happen at boot, from fstab
    mounted = _is_mounted(conn, path)
    if state == "mounted":
        if not mounted or entry_changed:
            result["changed"] = True
            if not ctx.check:
                if mounted:
                    run_checked(conn, ["umount", path])
                if conn.stat(path) is None:
                    make_dirs(conn, path)
                run_checked(conn, ["mount", path])
    elif state in ("unmounted", "absent") and mounted:
        result["changed"] = True
        if not ctx.check:
            run_checked(conn, ["umount", path])
    elif state == "remounted" and mounted:
        result["changed"] = True
        if not ctx.check:
            run_checked(conn, ["mount", "-o", "remount", path])
    return result


def _fstab_set(conn: Connection, fstab: str, path: str, line: str | None,
               ctx: ModuleContext, result: dict[str, Any]) -> bool:
    """Put (or drop, line=None) the entry for path; True when fstab changed."""
    st = conn.stat(fstab)
    lines = conn.read_file(fstab).decode(errors="replace").splitlines() if st else []
    new: list[str] = []
    placed = False
    for old in lines:
        parts = old.split()
        if parts and not parts[0].startswith("#") and len(parts) > 1 and \
                parts[1].rstrip("/") == fstab_escape(path).rstrip("/"):
            if line is not None and not placed:
                new.append(old if old.split() == line.split() else line)
                placed = True
            continue
        new.append(old)
    if line is not None and not placed:
        new.append(line)
    if new == lines:
        return False
    res = write_content(conn, fstab, ("\n".join(new) + "\n").encode(), {}, ctx)
    result["changed"] = True
    if "diff" in res:
        result["diff"] = res["diff"]
    return True


def _is_mounted(conn: Connection, path: str) -> bool:
    # Read over the open file channel, not with `cat`: under TCG a command costs the
    # guest a fork and an exec or two (0.3-2 s measured), a read a few milliseconds.
    # sftp-server and a shell are both children of sshd, in its mount namespace.
    text = conn.read_file("/proc/self/mounts").decode(errors="replace")
    return any(ln.split()[1:2] == [fstab_escape(path)] for ln in text.splitlines())


def _timezone(conn: Connection, args: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
    """/etc/localtime as a link into the zoneinfo and /etc/timezone, as Debian keeps
    them (what timedatectl and dpkg-reconfigure tzdata write), so it works offline too."""
    name = str(args["name"])
    zone = f"/usr/share/zoneinfo/{name}"
    if ".." in name.split("/") or conn.stat(zone) is None:
        raise TaskError(f"timezone: no zone {name!r} in the guest ({zone})",
                        hint="is tzdata installed? names look like Europe/Paris or Etc/UTC")
    st = conn.stat("/etc/localtime")
    before = ""
    if st is not None and st.is_link:
        before = conn.readlink("/etc/localtime").split("zoneinfo/", 1)[-1]
    result: dict[str, Any] = {"changed": False,
                              "diff": {"before": {"name": before}, "after": {"name": name}}}
    if before != name:
        result["changed"] = True
        if not ctx.check:
            if st is not None:
                conn.remove("/etc/localtime")
            conn.symlink(zone, "/etc/localtime")
    res = write_content(conn, "/etc/timezone", f"{name}\n".encode(), {}, ctx)
    result["changed"] |= res["changed"]
    return result


MODULES: dict[str, Module] = {
    "hostname": Module(_hostname, Spec(
        help="The guest's host name (/etc/hostname; also set live once booted).",
        params={"name": P("str", required=True),
                "use": P("str", choices=("systemd", "debian", "generic"),
                         help="accepted: /etc/hostname is written either way")},
        returns="name, ansible_facts.ansible_hostname")),
    "sysctl": Module(_sysctl, Spec(
        help="A kernel setting in sysctl.conf, applied live once booted.",
        params={"name": P("str", required=True, aliases=("key",)),
                "value": P("raw", aliases=("val",), help="yes/no and true/false are 1/0"),
                "state": P("str", default="present", choices=("present", "absent")),
                "sysctl_file": P("path", default="/etc/sysctl.conf"),
                "reload": P("bool", default=True),
                "sysctl_set": P("bool", default=False),
                "ignoreerrors": P("bool", default=False)},
        required_if=(("state", "present", ("value",)),),
        returns="name, value",
        differences="in the tree phase only the file is written; the value applies at "
                    "boot.")),
    "mount": Module(_mount, Spec(
        help="An fstab entry, and the mount itself once booted.",
        params={"path": P("path", required=True, aliases=("name",)),
                "src": P("str"), "fstype": P("str"), "opts": P("str"),
                "state": P("str", required=True, choices=_MOUNT_STATES),
                "dump": P("str", default="0"), "passno": P("str", default="0"),
                "fstab": P("path", default="/etc/fstab"),
                "boot": P("bool", default=True)},
        required_if=(("state", "mounted", ("src", "fstype")),
                     ("state", "present", ("src", "fstype"))),
        unsupported={"backup": "not done for fstab", "opts_no_log": "not done"},
        returns="name, src, fstype, opts",
        differences="in the tree phase state=mounted writes fstab and makes the directory; "
                    "the mount happens at boot.")),
    "timezone": Module(_timezone, Spec(
        help="The guest's time zone: /etc/localtime and /etc/timezone.",
        params={"name": P("str", required=True, help="e.g. Europe/Paris, Etc/UTC")},
        unsupported={"hwclock": "the guest's clock is QEMU's"},
        returns="diff (before/after name)",
        differences="writes the files directly (no timedatectl), so it works on the tree.")),
}
