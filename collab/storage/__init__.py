"""Where documents live between sessions, one concept per module.

==============  ==============================================================================
contract        `Store` (what the hub relies on), `HistoryStore` (a store that keeps its old
                segments), `Record`, `Snapshot`, `StoredDocument`, `DocumentInfo`, `Segment`,
                and the checks both stores make
errors          `FileFormatError(path, offset, reason)` and its kinds; `CompactionError`
format          the one on-disk format: frames, records, log and snapshot files, file names
fingerprint     whether two Yjs states hold the same document (compaction's check)
memory          `MemoryStore`
files           `FileStore`: locks, open handles, group commit, recovery, compaction
logs            reading a document's records across its segments
replay          rebuilding a document from records or a recording (bare, or via `Session`)
history         the history index: every revision and the text at any of them
verify          `collab replay --verify`
recording       `collab serve --record`: the recorder and the recording file format
==============  ==============================================================================
"""
