package jepsen

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/jepsen/history"
)

// env is what workloads share: the history, one client per node, and the
// counters that keep process numbers and written values unique.
type env struct {
	rec       *history.Recorder
	names     []string // node names, by index
	clients   []*client.Client
	opTimeout time.Duration
	processes atomic.Int64
	values    atomic.Int64
}

func newEnv(rec *history.Recorder, names, addrs []string, opTimeout time.Duration) *env {
	e := &env{rec: rec, names: names, opTimeout: opTimeout}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}}
	for _, a := range addrs {
		// Two quick retries of refusals that proposed nothing; the
		// operation's timeout bounds the rest. Gets that find one get
		// already in flight to their node go together in a batch, so
		// that the checkers judge batched gets as well as single ones.
		e.clients = append(e.clients, client.New(a, client.WithHTTPClient(hc), client.WithRetries(2, 20*time.Millisecond), client.WithBatching(1)))
	}
	return e
}

// process returns a fresh process number.
func (e *env) process() int { return int(e.processes.Add(1)) - 1 }

// value returns a value no other write of the run uses.
func (e *env) value() int { return int(e.values.Add(1)) }

// worker is one client: it runs one operation at a time as its current
// process, against its pinned node or, when floating, a random one.
type worker struct {
	process int
	pinned  int // node index, -1: floating
	rng     *rand.Rand
}

func (w *worker) node(e *env) int {
	if w.pinned >= 0 {
		return w.pinned
	}
	return w.rng.IntN(len(e.clients))
}

// writeOutcome classifies a write's error: ok, fail (the server proved
// nothing was applied) or info (unknown: it may have applied).
func writeOutcome(err error) history.Type {
	if err == nil {
		return history.OK
	}
	var ae *client.APIError
	if errors.As(err, &ae) {
		switch ae.Code {
		case "unavailable", "bad_request", "too_large", "version_mismatch", "not_found", "conflict", "disk_full":
			return history.Fail
		}
	}
	return history.Info
}

// opCtx bounds one operation.
func (e *env) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.opTimeout)
}

func parseInt(b []byte) (*int, error) {
	v, err := strconv.Atoi(string(b))
	if err != nil {
		return nil, err
	}
	return &v, nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	var ae *client.APIError
	if errors.As(err, &ae) {
		return ae.Code + ": " + ae.Message
	}
	return err.Error()
}
