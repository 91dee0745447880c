"""One module per noun group of the CLI."""
