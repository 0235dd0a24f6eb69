"""Student models: layer maps, uniform element selection, architecture specs, weight copy.

Kept empty on purpose: import the submodule you need (`kdtune.models.layer_map`, ...), so that
importing one of them never pulls in the others.
"""
