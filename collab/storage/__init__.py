"""Where documents live between sessions, one concept per module.

==============  ==============================================================================
contract        `Store` (what the hub relies on), `SharedStore` (written by many processes),
                `RevisionHistory` (a store that keeps old revisions), `HistoryStore` (one
                that keeps them as segment files), `SnapshotBuilder` (one that builds a
                compaction's snapshot itself), `Record`, `Snapshot`, `StoredDocument`,
                `DocumentInfo`, `Segment`, the store errors, and the checks stores make
errors          `FileFormatError(path, offset, reason)` and its kinds; `CompactionError`
format          the one on-disk format: frames, records, log and snapshot files, file names
fingerprint     whether two Yjs states hold the same document (compaction's check)
memory          `MemoryStore`
files           `FileStore`: locks, open handles, group commit, recovery, compaction
snapshots       a compaction's snapshot built from what is stored, checked and written
next_log        a compaction's new log, copied while appends go on, committed under the lock
worker          one task in a child process of its own (compaction off the event loop)
postgres        `PostgresStore`: the shared store on PostgreSQL (commits, compaction, history)
postgres_schema its tables, migrations and statements
logs            reading a document's records across its segments, or through any store
replay          rebuilding a document from records or a recording (bare, or via `Session`)
history         the history index: every revision and the text at any of them
verify          `collab replay --verify`
recording       `collab serve --record`: the recorder and the recording file format
==============  ==============================================================================
"""
