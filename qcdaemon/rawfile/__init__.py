"""The in-process Thermo RAW reader and the native ID-free metrics computed from it."""
