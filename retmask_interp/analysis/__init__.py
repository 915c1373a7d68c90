"""Organisation metrics of head scores, plotly figures, and the one figure writer."""
