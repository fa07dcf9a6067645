"""Pictures of results, one module per result kind (matplotlib PNG for papers, plotly HTML for exploring), the kind
table that reads any result JSON back and draws it, and the HTML report page."""
