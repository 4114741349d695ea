"""Guest setup's edits of Debian's own files, on their real shapes."""

from __future__ import annotations

from provision9p.rootfs.guest_setup import motd_without_update

# bookworm's /etc/pam.d/sshd, its session part (openssh-server 1:9.2p1)
DEBIAN_PAM_SSHD = """\
session    optional     pam_keyinit.so force revoke
@include common-session
# Print the message of the day upon successful login.
session    optional     pam_motd.so  motd=/run/motd.dynamic
session    optional     pam_motd.so noupdate
session    optional     pam_mail.so standard noenv # [1]
"""


def test_the_updating_motd_line_gets_noupdate_and_nothing_else_changes() -> None:
    out = motd_without_update(DEBIAN_PAM_SSHD).splitlines()
    assert "session    optional     pam_motd.so  motd=/run/motd.dynamic noupdate" in out
    assert sum("pam_motd.so" in line and "noupdate" in line for line in out) == 2
    others = [line for line in out if "pam_motd.so" not in line]
    assert [line for line in others if not line.startswith("# provision9p")] == [
        line for line in DEBIAN_PAM_SSHD.splitlines() if "pam_motd.so" not in line]


def test_a_comment_after_the_module_stays_a_comment() -> None:
    out = motd_without_update("session optional pam_motd.so # shows it\n")
    assert out.splitlines()[-1] == "session optional pam_motd.so noupdate # shows it"


def test_done_once_and_commented_lines_left_alone() -> None:
    once = motd_without_update(DEBIAN_PAM_SSHD)
    assert motd_without_update(once) == once
    commented = "#session optional pam_motd.so motd=/run/motd.dynamic\n"
    assert motd_without_update(commented) == commented
