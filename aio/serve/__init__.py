"""Model serving (task=serve): a run's model over HTTP with LitServe; see aio/serve/app.py."""
