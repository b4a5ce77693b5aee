"""Imports every built-in pass module so that each registers its pass."""

from . import canonicalize, recognize_kwta  # noqa: F401
