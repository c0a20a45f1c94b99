"""One module per system-call family; each validates like the kernel and calls the core's modify path."""
