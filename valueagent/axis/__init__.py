"""The value axis: data, estimators, validation and the stored artifact."""
