"""End-to-end runs built on the layers below: demo, paper figures, analysis of files, checks."""
