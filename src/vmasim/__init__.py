"""vmasim: a model of the Linux kernel's VMA layer."""

__version__ = "0.1.0"
