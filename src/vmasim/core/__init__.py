"""The model proper: VMAs, the ordered store, the address space, merge/split/modify, faults and placement."""
