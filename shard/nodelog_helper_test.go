package shard

import (
	"errors"
	"path/filepath"

	"github.com/cairndb/cairn/shard/nodelog"
	"github.com/hashicorp/go-hclog"
)

// testNodeLog opens the shared log beside the replica directory dir (as a
// node keeps it: <data-dir>/raft/nodelog next to <data-dir>/raft/<shard>)
// when the replica uses it or is created with format; nil otherwise.
func testNodeLog(dir string, format LogStore) (*nodelog.Log, error) {
	kind, err := ExistingLogStore(dir)
	if err != nil {
		return nil, err
	}
	if kind != LogStoreNode && (kind != "" || format != LogStoreNode) {
		return nil, nil
	}
	return nodelog.Open(filepath.Join(filepath.Dir(dir), "nodelog"), nodelog.Options{SegmentSize: 4 << 20})
}

// openTestLogStore opens an existing replica's raft log from outside the
// replica; done closes it (and the shared log, if it opened one).
func openTestLogStore(dir string) (logStore, func() error, error) {
	shared, err := testNodeLog(dir, "")
	if err != nil {
		return nil, nil, err
	}
	logs, _, err := openLogStore(dir, "", hclog.NewNullLogger(), shared, 1)
	if err != nil {
		if shared != nil {
			shared.Close()
		}
		return nil, nil, err
	}
	return logs, func() error {
		err := logs.Close()
		if shared != nil {
			err = errors.Join(err, shared.Close())
		}
		return err
	}, nil
}
