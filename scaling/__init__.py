"""The over-optimization laws and their statistics: the forms, the points-table schema, groups, least squares,
bootstrap and intervals, coefficient scaling, advance and unseen-size prediction, significance tests, the proxy
ladder, the spread across replicates. Nothing here parses arguments or reads a foreign run (`ingest`)."""
