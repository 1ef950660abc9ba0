"""The product: experiments, results files, reports, plots, the quickstart and the command line."""
