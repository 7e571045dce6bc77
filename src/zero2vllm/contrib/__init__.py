"""The learner's own vLLM clone: git and test plumbing (repo, testrun), GitHub (github), vLLM's
source (vllmsrc) and the rule locked predictions are hashed by (predictions). Used by the labs of
weeks 4-8 inside the check process, so nothing here opens the store: what `z2v contrib` stored
is passed in (tracker/contrib_settings.py keeps it)."""
