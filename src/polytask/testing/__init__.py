"""Public contract checks for methods and architectures."""
