"""Infrastructure helpers shared by several adapters: no domain rules, no adapter imports.

``sqlite``: the SQLite connection discipline of the SQLite store and the SQLite queue.
``aws``: botocore client settings, error codes and DynamoDB encodings of the AWS store and
queue. ``budget``: how long one GitHub call and one job may take (the GitHub client's retry
settings and the worker's timeouts derive from it).
"""
