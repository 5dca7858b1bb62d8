"""External programs: the runner that starts them, and RawTools and MaxQuant command building and parsing."""
