"""Report sections shared by the demo and the reproductions (each adds one section to a report)."""
