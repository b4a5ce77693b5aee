"""sparsecc.runtime."""
