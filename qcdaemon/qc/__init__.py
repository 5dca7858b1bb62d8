"""Pure computations on stored QC values: the qc-data table, mzQC, control limits and verdicts."""
