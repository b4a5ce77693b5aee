"""sparsecc.compiler."""
