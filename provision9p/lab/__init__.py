"""Stage 1: the lab file, validated once into a LabSpec."""

from provision9p.lab.model import GuestSpec, LabSpec, Share
from provision9p.lab.validate import load_lab, validate_text

__all__ = ["GuestSpec", "LabSpec", "Share", "load_lab", "validate_text"]
