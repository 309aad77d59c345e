"""The medallion pipeline's Spark jobs: one module per job, shared code beside them."""
