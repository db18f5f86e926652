"""The blocklist: a versioned store of block and unblock entries and its distribution to operators.

Modules (imported one by one on purpose: the Kafka and HTTP clients load only where they are used):

- ``decision``: the vocabulary shared with ``streaming.policy`` (fraud types, scopes, idempotency
  keys, policy settings, ``Decision``, the allowlist); nothing here imports ``streaming.policy``
  except ``sink``, which runs it;
- ``settings``: operators, analysts, webhook and Kafka publishing, the HTTP service;
- ``errors``, ``metrics``: one-line errors, Prometheus counters;
- ``models`` / ``db`` / ``migrate``: the schema (SQLAlchemy ORM, Alembic migrations under
  ``migrations/``), engines, ``upgrade(engine_url)``;
- ``store``: :class:`~streaming.blocklist.store.BlocklistStore`, put together from ``writes``
  (the version lock, new entries, lifts), ``apply`` (the model's decisions), ``lifts`` (expiry,
  analyst unblock, allowlists) and ``queries`` (versions, snapshots, history, audit, gauges); the
  records it hands out are in ``records``, and ``numbers_file`` reads a registered-business file;
- ``payload``: the one JSON form of an entry that every channel sends;
- ``publish_kafka``, ``publish_webhook``, ``export``: the channels (compacted Kafka topic per
  operator, HTTP webhooks through an outbox, CSV snapshots); ``cursors``: their per-operator
  cursors and leases;
- ``sink``: :class:`~streaming.blocklist.sink.BlocklistSink`, what the streaming job calls;
- ``service``: the HTTP API of ``simguard serve`` and its distribution loop.
"""
