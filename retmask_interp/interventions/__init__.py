"""Head interventions: masking plans, weight edits, random controls, TransformerLens hooks."""
