"""The value axis: data, estimators, validation and the build.

The stored artifact the runtime reads is :mod:`valueagent.runtime.artifact`.
"""
