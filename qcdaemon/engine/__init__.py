"""The persistent job engine: ingestion of watched files into runs, the queue's workers, the stages."""
