"""provision9p: QEMU guests whose root file system is a host directory served over 9P."""

__version__ = "0.1.0"
