"""The Textual console, and serving it (and tenant shells) over SSH. A pure client of the control API."""
