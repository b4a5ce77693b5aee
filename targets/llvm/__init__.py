"""sparsecc.targets.llvm."""
