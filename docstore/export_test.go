package docstore

// Test hooks.

// EntryKeys returns the index entries a stored document calls for.
func EntryKeys(coll string, idx IndexSpec, d Doc) ([][]byte, error) {
	id, _ := d[FieldID].(string)
	return entryKeys(coll, idx, d, id)
}

// IndexPrefix is the key prefix of an index's entries.
func IndexPrefix(coll, index string) []byte { return indexPrefix(coll, index) }
