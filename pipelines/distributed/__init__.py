"""Feature builds and predictions over a Dask cluster.

``rows`` runs the row-wise work partition by partition, ``cluster`` starts or
joins the cluster from the command-line options, and ``parts`` writes and
reads the per-partition result files (atomic, checksummed) that let a killed
run resume. ``build_features --scheduler`` and ``predict --scheduler`` use
them; ``pipelines.read_parts`` reads a finished directory back.
"""
