"""sparsecc.driver: what users call on top of the compiler, frontends, targets and runtime (evaluation)."""
