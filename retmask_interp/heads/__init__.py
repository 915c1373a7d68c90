"""Head lists: scores with provenance (our JSON, Wu's JSON) and other tools' formats."""
