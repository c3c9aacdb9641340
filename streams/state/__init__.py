"""Subject state of the streaming worker: one home for what the worker keeps.

- `store`: the Redis key layout of state (`StateKeys`) and its reads
  (`StateStore`: one pipelined round trip per batch, retried like the sink,
  never overtaking a write in flight); stored values may be compressed
  (`pack`, `codec.decompress`);
- `codec`: subject state and internal messages as compact JSON (never pickle);
- `subjects`: `CachedSubjects`, the engine's `SubjectStore` in a worker:
  subjects loaded from Redis and kept between batches (LRU), and the state
  writes of a settled batch.

Writes go with the batch through the sink (`SinkBatch.states`: `HashWrite`,
`SetAdd`), in the same atomic Lua call as the contributions and offsets, so
Redis always holds the state of exactly the offsets it records as applied.
"""
