"""One module per ChatOps command; each registers itself with a help record."""
