"""SSH keys: the tool's key pair for a lab, and per-guest host keys made at build time.

The host key's public half is kept in the state directory so every later
connection pins it: a guest that answers with another key is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


@dataclass(frozen=True)
class KeyPair:
    private_openssh: bytes
    public_line: str  # "ssh-ed25519 AAAA..."


def generate(comment: str) -> KeyPair:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return KeyPair(private, f"{public} {comment}")


def write_private(path: Path, pair: KeyPair) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pair.private_openssh)
    tmp.with_name(path.name + ".pub.tmp").write_text(pair.public_line + "\n")
    os.replace(tmp.with_name(path.name + ".pub.tmp"), path.with_name(path.name + ".pub"))
    os.replace(tmp, path)


def lab_client_key(path: Path) -> tuple[Path, str]:
    """The lab's own client key at `path` (made on first use): its path and public line."""
    if not path.exists():
        write_private(path, generate("provision9p"))
    return path, path.with_name("id_ed25519.pub").read_text().strip()
