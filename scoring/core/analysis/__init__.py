"""Analysis: the warm pylint and bandit analyser, and the findings a patch introduces."""
