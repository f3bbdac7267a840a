"""The sample project is a user's project with tests of its own: run by test_plugin.py in a subprocess, never
collected into this suite (its tests need its rootdir and none of our fixtures)."""

collect_ignore = ["sample_project"]
