"""Data: image files and path safety (images), the CSV tables, labels and folds (tables), --check_data
(check), the Dataset (dataset), augmentation (transforms), the decoded-image cache (cache), samplers and
loaders. Imports errors, labels, seeds, the config schema and run.atomic; never the engine."""
