"""The failures a user can meet, one class each.

Every error carries what happened and what to do next (``hint``). Library code
raises these; only the CLI turns them into a message and an exit code.
"""

from __future__ import annotations


class Provision9pError(Exception):
    """Root of every error provision9p raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(Provision9pError):
    """The command line asks for something that does not exist or does not fit."""

    exit_code = 2


class LabError(Provision9pError):
    """The lab file is invalid; carries every problem found in one pass."""

    exit_code = 2

    def __init__(self, problems: list[str], hint: str | None = None) -> None:
        self.problems = problems
        head = f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in the lab file:"
        super().__init__("\n".join([head, *(f"  {p}" for p in problems)]), hint)


class ShareAccessError(Provision9pError):
    """A share's host directory that QEMU's user cannot read, write or reach (found
    before any build or boot)."""

    exit_code = 2


class KernelError(Provision9pError):
    """A kernel, its configuration or its package cannot be read or fetched."""

    exit_code = 2


class HostError(Provision9pError):
    """The host lacks something the lab needs (a program, a privilege, disk, xattrs)."""


class MirrorError(Provision9pError):
    """The Debian mirror cannot be reached or does not have what was asked for."""


class BuildError(Provision9pError):
    """Building the root tree, kernel or initramfs failed."""


class BootError(Provision9pError):
    """A guest did not start or did not come up."""


class StateError(Provision9pError):
    """The lab's state directory says something conflicting (locked, stale, missing)."""


class ConnectError(Provision9pError):
    """The SSH connection to a guest failed or its host key does not match."""


class RoleError(Provision9pError):
    """A role cannot be loaded: missing, bad YAML, unknown module or parameter, template
    syntax. Found before anything runs."""

    exit_code = 2


class TaskError(Provision9pError):
    """A task failed while running."""


class CommandError(Provision9pError):
    """A command that provision9p ran on the host failed."""

    def __init__(self, argv: list[str], returncode: int, output: str, hint: str | None = None):
        self.argv = argv
        self.returncode = returncode
        self.output = output
        tail = "\n".join(output.rstrip().splitlines()[-15:])
        msg = f"{argv[0]} exited with status {returncode}"
        if tail:
            msg += ":\n" + tail
        super().__init__(msg, hint)


class VerifyError(Provision9pError):
    """One or more verification checks failed."""
