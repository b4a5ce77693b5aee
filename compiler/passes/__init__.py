"""Pass infrastructure and the built-in passes."""

from .base import (
    Pass,
    PassInstrument,
    PassManager,
    PassTimer,
    PrintIR,
    ReportProgress,
    VerifyIR,
    make_pass,
    parse_pipeline,
    register_pass,
    registered_passes,
)
from .rewrite import RewritePattern, Rewriter, apply_patterns, erase_dead_ops, refresh_types

__all__ = [
    "Pass", "PassInstrument", "PassManager", "PassTimer", "PrintIR", "ReportProgress", "RewritePattern", "Rewriter",
    "VerifyIR", "apply_patterns", "erase_dead_ops", "make_pass", "parse_pipeline", "refresh_types", "register_pass",
    "registered_passes",
]
