"""clayloop: keeps a lead database and Clay enrichment tables in a reliable loop."""

__version__ = "0.1.0"
