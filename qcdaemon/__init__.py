"""qcdaemon: instrument-side quality control for Thermo RAW files."""

__version__ = "0.1.0"
