"""One module per distillation method; the public classes are re-exported by the package."""
