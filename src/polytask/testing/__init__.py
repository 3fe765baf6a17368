"""Public contract checks for architectures and balancers."""
