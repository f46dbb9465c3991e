"""What the tests share besides fixtures (tests/conftest.py holds only fixtures and hooks):

- audio: the one audio builder (tones, two-tone class folders, batches of tones as a
  front-end's input, files in every format)
- runs: the command line and in-process runs, sweeps and reports; the MLflow store a run wrote
- frontends: front-ends as a test builds them, docs/method.md's feature lengths, the golden data
- layouts: the datasets' real folder layouts, complete and broken
- reports: report stores written through MLflow's client, and reading table.md
- services: PostgreSQL and an MLflow server started for a test
- slurm_cluster: a single-node SLURM cluster (also a script: ``python tests/helpers/slurm_cluster.py start``)
- users: two users of one group with umasks of their own (forked children)
- cka: linear CKA by its formula, the reference for the report's
- tf1: the original code's TensorFlow 1 weights loaded into a front-end
"""
