"""Run directories: the files of one run (rundir), where it came from (provenance), its checkpoints, and a results
folder shared by many processes (store)."""
