"""MLOps around the feature platform (issue #18): traceable training sets (``fs trainset``) and
promotion between environments (``fs promote``).

MLflow is optional (``pip install 'fs-platform[mlflow]'``)."""
