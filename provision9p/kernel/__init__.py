"""The guest kernel: read its configuration from anywhere, decide how it boots a 9P root.

Public API: check_kernel, check_package, KernelReport, module_load_order, extract_deb.
"""

from provision9p.kernel.check import KernelReport, check_kernel, check_package
from provision9p.kernel.deb import extract_deb
from provision9p.kernel.modules import module_load_order

__all__ = ["KernelReport", "check_kernel", "check_package", "extract_deb",
           "module_load_order"]
