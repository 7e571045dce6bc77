"""The learner's own vLLM clone: git and test plumbing (repo, testrun), GitHub (github), and
what `z2v contrib` stores (settings). Used by the labs of weeks 4-8."""
