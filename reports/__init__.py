"""Statistics and rendering of results (tables, tests, plots, HTML report): not built yet."""
