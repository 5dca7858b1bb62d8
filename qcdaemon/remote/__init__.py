"""Stages run on a Dask cluster (issue 17): the job sent to a worker, the daemon's side of it.

``task.py`` runs on the worker (standard library and ``distributed`` only, shipped by value);
``paths.py`` maps daemon paths to the workers' view of a share; ``client.py`` submits a job,
re-attaches to it after a restart, waits, cancels; ``maxquant.py`` is the MaxQuant stage's remote
half.  The job state stays in the store (``store/remote.py``).  ``distributed`` is the optional
extra ``qcdaemon[scale]``: imported only when a stage is configured to run on Dask.
"""
