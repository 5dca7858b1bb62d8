"""The demo project's data: real RawTools and MaxQuant outputs (sources and licences in data/README.md)."""
