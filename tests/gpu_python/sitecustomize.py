"""The GPU machine's package set, on this machine: its python has no fvcore, papermill, submitit,
nbconvert or jupyter. With this folder on PYTHONPATH, importing any of them fails as it does there."""
import importlib.abc
import sys

ABSENT = ("fvcore", "papermill", "submitit", "nbconvert", "jupyter", "jupyter_client", "nbclient")


class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {name!r} (not on the GPU machine)", name=name)
        return None


sys.meta_path.insert(0, _Absent())
