package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// WithBatching bounds the get requests the client keeps in flight to each
// node to perNode and lets the gets that find that bound reached wait for
// the next free place together: they then go in one POST /v1/batch, where
// the node does each as its own request would and answers each on its
// own. With fewer concurrent gets than the bound nothing waits and every
// get is a request of its own, as without batching; with more, many gets
// share each request's system calls on both sides (the way gRPC shares a
// connection's writes), which is where most of a small read's CPU goes.
//
// Each get keeps its consistency and is linearizable on its own, as when
// sent alone; the gets of one batch are concurrent, in no order among
// themselves. Answers, errors and retries are those of single gets: a get
// the node answered 503 is retried, and a batch refused as a whole (a node
// without /v1/batch, say) is sent again one get per request. The price is
// that a batch is answered when its slowest get is: a get of a shard that
// is electing a leader holds up the gets that share its batch. Puts and
// deletes are not batched: their cost is their raft entry and its syncs,
// and batching them was measured to gain nothing.
func WithBatching(perNode int) Option {
	return func(c *Client) {
		if perNode > 0 {
			c.batch = &batcher{perNode: perNode, nodes: map[string]*nodeBatch{}}
		}
	}
}

// maxBatch bounds the operations the client puts in one batch (the node
// takes up to 1000).
const maxBatch = 256

type batcher struct {
	perNode int
	mu      sync.Mutex
	nodes   map[string]*nodeBatch // a node's base URL → its gets
}

type nodeBatch struct {
	inflight int
	queue    []*pendingOp
}

// batchOp is a get in POST /v1/batch: its key is Key, or KeyBase64 when
// its bytes are not UTF-8.
type batchOp struct {
	Op           string `json:"op"`
	Key          string `json:"key,omitempty"`
	KeyBase64    []byte `json:"key_base64,omitempty"`
	Consistency  string `json:"consistency,omitempty"`
	MaxStaleness string `json:"max_staleness,omitempty"`
}

// batchResult is one get's answer: Status is the status its own request
// would have had.
type batchResult struct {
	Status  int    `json:"status"`
	Version uint64 `json:"version"`
	Value   []byte `json:"value"`
	Error   *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// pendingOp is an operation waiting for, or riding in, a batch.
type pendingOp struct {
	op       batchOp
	deadline time.Time // zero: its context has none
	done     chan struct{}
	taken    bool // in a batch (under batcher.mu)

	// Set before done closes.
	res     batchResult
	err     error // the batch's request failed
	unsent  bool  // err proves the batch never reached the node
	refused bool  // the batch was refused as a whole: send the get alone
}

// newGetOp returns the batch operation of a get of key.
func newGetOp(key string) batchOp {
	b := batchOp{Op: "get"}
	if utf8.ValidString(key) {
		b.Key = key
	} else {
		b.KeyBase64 = []byte(key)
	}
	return b
}

// slot returns true when the caller may send its request alone now (it
// must call release(base) once answered); otherwise p is queued for a
// batch to base.
func (b *batcher) slot(base string, p *pendingOp) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	nb := b.nodes[base]
	if nb == nil {
		nb = &nodeBatch{}
		b.nodes[base] = nb
	}
	if nb.inflight < b.perNode {
		nb.inflight++
		return true
	}
	nb.queue = append(nb.queue, p)
	return false
}

// release hands a finished request's place to the gets waiting for base,
// as one batch, or frees it.
func (b *batcher) release(c *Client, base string) {
	b.mu.Lock()
	nb := b.nodes[base]
	if len(nb.queue) == 0 {
		nb.inflight--
		b.mu.Unlock()
		return
	}
	n := min(len(nb.queue), maxBatch)
	ops := make([]*pendingOp, n)
	copy(ops, nb.queue)
	rest := copy(nb.queue, nb.queue[n:])
	clear(nb.queue[rest:]) // drop the references of the taken ones
	nb.queue = nb.queue[:rest]
	for _, p := range ops {
		p.taken = true
	}
	b.mu.Unlock()
	go func() {
		c.sendBatch(base, ops)
		b.release(c, base)
	}()
}

// abandon takes p out of its queue if no batch has taken it yet.
func (b *batcher) abandon(base string, p *pendingOp) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.taken {
		return
	}
	nb := b.nodes[base]
	for i, q := range nb.queue {
		if q == p {
			nb.queue = append(nb.queue[:i], nb.queue[i+1:]...)
			break
		}
	}
}

// sendBatch sends ops in one request to base and sets each one's answer.
func (c *Client) sendBatch(base string, ops []*pendingOp) {
	defer func() {
		for _, p := range ops {
			close(p.done)
		}
	}()
	// The request may last until the latest of its callers' deadlines.
	ctx := context.Background()
	var last time.Time
	for _, p := range ops {
		if p.deadline.IsZero() {
			last = time.Time{}
			break
		}
		if p.deadline.After(last) {
			last = p.deadline
		}
	}
	if !last.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, last)
		defer cancel()
	}
	req := struct {
		Ops []batchOp `json:"ops"`
	}{Ops: make([]batchOp, len(ops))}
	for i, p := range ops {
		req.Ops[i] = p.op
	}
	fail := func(err error, unsent bool) {
		for _, p := range ops {
			p.err, p.unsent = err, unsent
		}
	}
	body, err := json.Marshal(req)
	if err != nil {
		fail(err, true)
		return
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/batch", bytes.NewReader(body))
	if err != nil {
		fail(err, true)
		return
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(hr)
	if err != nil {
		fail(err, neverSent(err))
		return
	}
	b, err := readBody(resp)
	resp.Body.Close()
	if err != nil {
		fail(err, false)
		return
	}
	if resp.StatusCode != http.StatusOK {
		// Refused as a whole, before anything was done (bad input in some
		// operation, an old node without the route), or unavailable: each
		// operation goes again on its own.
		for _, p := range ops {
			p.refused = true
		}
		return
	}
	var ans struct {
		Results []batchResult `json:"results"`
	}
	if err := unmarshal(b, &ans); err != nil || len(ans.Results) != len(ops) {
		if err == nil {
			err = errors.New("batch answer holds a different number of results")
		}
		fail(err, false)
		return
	}
	for i, p := range ops {
		p.res = ans.Results[i]
	}
}

// batchedGet does the get op through the batcher. When the node at base
// has fewer requests in flight than the client allows, or a batch holding
// op was refused as a whole, answered is false: the caller sends op as a
// request of its own, and calls release, when not nil, once it has its
// answer. Otherwise the answer is op's, retried like a single get's.
func (c *Client) batchedGet(ctx context.Context, base string, op batchOp) (res batchResult, answered bool, release func(), err error) {
	for attempt := 0; ; attempt++ {
		p := &pendingOp{op: op, done: make(chan struct{})}
		p.deadline, _ = ctx.Deadline()
		if c.batch.slot(base, p) {
			b := base
			return batchResult{}, false, func() { c.batch.release(c, b) }, nil
		}
		select {
		case <-p.done:
		case <-ctx.Done():
			c.batch.abandon(base, p)
			return batchResult{}, true, nil, &APIError{Code: "unavailable", Message: ctx.Err().Error()}
		}
		if dl, ok := ctx.Deadline(); ok && p.err != nil && errors.Is(p.err, context.DeadlineExceeded) && !time.Now().Before(dl) {
			// The batch lasted until the latest of its callers' deadlines,
			// and this caller's has passed too: answer as its own context
			// does, once its timer has fired.
			<-ctx.Done()
			p.err = ctx.Err()
		}
		switch {
		case p.refused:
			return batchResult{}, false, nil, nil
		case p.err != nil && p.unsent && base != c.base && c.routing != nil:
			c.routing.forget()
			base = c.base
			continue
		case p.err != nil:
			if attempt >= c.retries || ctx.Err() != nil {
				return batchResult{}, true, nil, &APIError{Code: "unavailable", Message: p.err.Error()}
			}
			c.sleep(ctx, attempt)
			continue
		}
		r := p.res
		if r.Status == http.StatusOK {
			return r, true, nil, nil
		}
		if r.Status == http.StatusServiceUnavailable && attempt < c.retries && ctx.Err() == nil {
			c.sleep(ctx, attempt)
			continue
		}
		e := &APIError{Status: r.Status, Code: "http_" + strconv.Itoa(r.Status)}
		if r.Error != nil {
			e.Code, e.Message = r.Error.Code, r.Error.Message
		}
		return r, true, nil, e
	}
}
