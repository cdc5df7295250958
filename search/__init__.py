"""Full-text search over published listings with tantivy (Russian/English analysis, typo
tolerance, geo and availability filters), fed from listing events on JetStream (issue #5)."""
