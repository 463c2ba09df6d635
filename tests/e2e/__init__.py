"""From a trained study to a report, through a served test and a browser."""
