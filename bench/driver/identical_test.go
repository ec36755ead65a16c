// Package driver_test checks that the Cairn and etcd drivers, run by the
// same engine with the same settings, send the same operations: each is
// pointed at a fake server of its protocol that records what it receives.
package driver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairndb/cairn/bench/driver/cairn"
	"github.com/cairndb/cairn/bench/driver/etcd"
	"github.com/cairndb/cairn/bench/load"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc"
)

// seen is an operation as a server received it.
type seen struct {
	kind  string
	key   string
	value string
	stale bool
	limit int
	end   string // etcd's range end
}

func (s seen) String() string {
	return fmt.Sprintf("%s %s stale=%v limit=%d value=%x", s.kind, s.key, s.stale, s.limit, s.value)
}

type log struct {
	mu      sync.Mutex
	ops     []seen
	indexes []string // Cairn: "name(fields)" of every index created
}

// docSeen records a document insert: its _id, and its other fields.
func docSeen(doc map[string]any) seen {
	id, _ := doc["_id"].(string)
	return seen{kind: "doc-insert", key: id, value: fmt.Sprintf("grp=%v age=%v pad=%v fields=%d", doc["grp"], doc["age"], doc["pad"], len(doc))}
}

func (l *log) add(s seen) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, s)
}

func (l *log) all() []seen {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]seen(nil), l.ops...)
}

// fakeCairn records kvnode HTTP API calls.
func fakeCairn(t *testing.T, l *log) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch {
		case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/kv/"):
			b, _ := io.ReadAll(r.Body)
			l.add(seen{kind: "put", key: strings.TrimPrefix(r.URL.Path, "/v1/kv/"), value: string(b)})
			io.WriteString(w, `{"version":1}`)
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/kv/"):
			key := strings.TrimPrefix(r.URL.Path, "/v1/kv/")
			l.add(seen{kind: "get", key: key, stale: q.Get("consistency") == "stale"})
			if key[len(key)-1]%2 == 1 { // half the keys absent: still a success
				w.WriteHeader(http.StatusNotFound)
				io.WriteString(w, `{"error":{"code":"not_found","message":"absent"}}`)
				return
			}
			w.Header().Set("Kv-Version", "1")
			io.WriteString(w, "v")
		case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/docs/"+load.Collection+"/_indexes/"):
			var body struct {
				Fields []string `json:"fields"`
			}
			_ = json.NewDecoder(r.Body).Decode(&body)
			name := strings.TrimPrefix(r.URL.Path, "/v1/docs/"+load.Collection+"/_indexes/")
			l.mu.Lock()
			l.indexes = append(l.indexes, fmt.Sprintf("%s(%s)", name, strings.Join(body.Fields, ",")))
			l.mu.Unlock()
			fmt.Fprintf(w, `{"name":%q,"fields":[],"state":"ready"}`, name)
		case r.Method == http.MethodPost && r.URL.Path == "/v1/docs/"+load.Collection:
			var doc map[string]any
			if err := json.NewDecoder(r.Body).Decode(&doc); err != nil {
				http.Error(w, err.Error(), http.StatusTeapot)
				return
			}
			l.add(docSeen(doc))
			fmt.Fprintf(w, `{"_id":%q,"_version":1}`, doc["_id"])
		case r.Method == http.MethodPost && r.URL.Path == "/v1/docs/"+load.Collection+"/_find":
			var q struct {
				Filter map[string]any `json:"filter"`
			}
			if err := json.NewDecoder(r.Body).Decode(&q); err != nil || len(q.Filter) != 1 {
				http.Error(w, fmt.Sprintf("unexpected query %v (%v)", q.Filter, err), http.StatusTeapot)
				return
			}
			l.add(seen{kind: "doc-find", key: fmt.Sprint(q.Filter["grp"])})
			fmt.Fprintf(w, `{"docs":[{"_id":"x","grp":%v}],"cursor":""}`, q.Filter["grp"])
		case r.Method == http.MethodPost && r.URL.Path == "/v1/txn":
			var body struct {
				If   []json.RawMessage `json:"if"`
				Then []struct {
					Put *struct {
						Key   string `json:"key"`
						Value []byte `json:"value"`
					} `json:"put"`
				} `json:"then"`
				Else []json.RawMessage `json:"else"`
			}
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.If) > 0 || len(body.Else) > 0 {
				http.Error(w, fmt.Sprintf("unexpected transaction (%v)", err), http.StatusTeapot)
				return
			}
			var puts [][2]string
			for _, op := range body.Then {
				if op.Put == nil {
					http.Error(w, "a transaction op that is not a put", http.StatusTeapot)
					return
				}
				puts = append(puts, [2]string{op.Put.Key, string(op.Put.Value)})
			}
			l.add(txnSeen(puts))
			io.WriteString(w, `{"succeeded":true,"results":[{"version":1},{"version":2}]}`)
		case r.Method == http.MethodGet && r.URL.Path == "/v1/kv":
			limit, _ := strconv.Atoi(q.Get("limit"))
			l.add(seen{kind: "scan", key: q.Get("start"), stale: q.Get("consistency") == "stale", limit: limit})
			io.WriteString(w, `{"items":[],"cursor":""}`)
		default:
			http.Error(w, "unexpected "+r.Method+" "+r.URL.String(), http.StatusTeapot)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// fakeEtcd records etcd KV calls.
type fakeEtcd struct {
	pb.UnimplementedKVServer
	l *log
}

func (f *fakeEtcd) Range(_ context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if grp, ok := strings.CutPrefix(string(r.Key), "idx/"+load.Collection+"/"+load.IndexGrp+"/"); ok {
		// A find's first step: the grp's index entries (one here).
		n, err := strconv.Atoi(strings.TrimSuffix(grp, "/"))
		if err != nil || string(r.RangeEnd) != string(r.Key[:len(r.Key)-1])+"0" {
			return nil, fmt.Errorf("unexpected index range %q to %q", r.Key, r.RangeEnd)
		}
		f.l.add(seen{kind: "doc-find", key: strconv.Itoa(n)})
		return &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 1},
			Kvs: []*mvccpb.KeyValue{{Key: append(r.Key, "x"...)}}, Count: 1}, nil
	}
	kind := "get"
	if len(r.RangeEnd) > 0 {
		kind = "scan"
	}
	f.l.add(seen{kind: kind, key: string(r.Key), stale: r.Serializable, limit: int(r.Limit), end: string(r.RangeEnd)})
	return &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 1}}, nil
}

func (f *fakeEtcd) Put(_ context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	f.l.add(seen{kind: "put", key: string(r.Key), value: string(r.Value)})
	return &pb.PutResponse{Header: &pb.ResponseHeader{Revision: 1}}, nil
}

func (f *fakeEtcd) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if len(r.Compare) == 1 {
		return f.insertDoc(r)
	}
	if len(r.Success) > 0 && r.Success[0].GetRequestRange() != nil {
		// A find's second step: the documents its index range named.
		resp := &pb.TxnResponse{Header: &pb.ResponseHeader{Revision: 1}, Succeeded: true}
		for _, op := range r.Success {
			g := op.GetRequestRange()
			if g == nil || string(g.Key) != etcd.DocKey("x") {
				return nil, fmt.Errorf("a find read %v, want the document x", op)
			}
			resp.Responses = append(resp.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{
				ResponseRange: &pb.RangeResponse{Kvs: []*mvccpb.KeyValue{{Key: g.Key, Value: []byte(`{}`)}}, Count: 1}}})
		}
		return resp, nil
	}
	var puts [][2]string
	resp := &pb.TxnResponse{Header: &pb.ResponseHeader{Revision: 1}, Succeeded: len(r.Compare) == 0}
	for _, op := range r.Success {
		p := op.GetRequestPut()
		if p == nil {
			return nil, fmt.Errorf("a transaction op that is not a put: %v", op)
		}
		puts = append(puts, [2]string{string(p.Key), string(p.Value)})
		resp.Responses = append(resp.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{}}})
	}
	if len(r.Compare) > 0 || len(r.Failure) > 0 {
		puts = append(puts, [2]string{"unexpected comparisons or failure branch", ""})
	}
	f.l.add(txnSeen(puts))
	return resp, nil
}

// insertDoc checks the emulation of a document insert (the document's key
// never created, then the document and its two index entries) and records
// it.
func (f *fakeEtcd) insertDoc(r *pb.TxnRequest) (*pb.TxnResponse, error) {
	c := r.Compare[0]
	if c.Target != pb.Compare_CREATE || c.Result != pb.Compare_EQUAL || c.GetCreateRevision() != 0 || len(r.Success) != 3 || len(r.Failure) != 0 {
		return nil, fmt.Errorf("unexpected insert %v", r)
	}
	var doc map[string]any
	put := r.Success[0].GetRequestPut()
	if put == nil || json.Unmarshal(put.Value, &doc) != nil {
		return nil, fmt.Errorf("unexpected document put %v", r.Success[0])
	}
	id, _ := doc["_id"].(string)
	grp, _ := doc["grp"].(float64)
	age, _ := doc["age"].(float64)
	want := []string{etcd.DocKey(id), etcd.GroupPrefix(int(grp)) + id, fmt.Sprintf("idx/%s/%s/%03d/%s", load.Collection, load.IndexAge, int(age), id)}
	for i, op := range r.Success {
		if p := op.GetRequestPut(); p == nil || string(p.Key) != want[i] || string(c.Key) != want[0] {
			return nil, fmt.Errorf("insert op %d %v (compare on %q), want a put of %q", i, op, c.Key, want[i])
		}
	}
	f.l.add(docSeen(doc))
	return &pb.TxnResponse{Header: &pb.ResponseHeader{Revision: 1}, Succeeded: true}, nil
}

// txnSeen records a transaction of puts: kind txn, its keys joined by a
// comma, and its value when every put has the same one.
func txnSeen(puts [][2]string) seen {
	s := seen{kind: "txn"}
	for i, p := range puts {
		if i > 0 {
			s.key += ","
			if p[1] != s.value {
				s.value = "different values"
			}
		} else {
			s.value = p[1]
		}
		s.key += p[0]
	}
	return s
}

func startFakeEtcd(t *testing.T, l *log) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	pb.RegisterKVServer(s, &fakeEtcd{l: l})
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func TestDriversSendTheSameOperations(t *testing.T) {
	for _, w := range load.Workloads {
		t.Run(string(w), func(t *testing.T) {
			var cl, el log
			cd, err := cairn.New([]string{fakeCairn(t, &cl)}, 1, false, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer cd.Close()
			ed, err := etcd.New([]string{startFakeEtcd(t, &el)}, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer ed.Close()
			cfg := load.Config{Workload: w, Clients: 1, Keys: 1000, ValueSize: 64, Seed: 3, Duration: 500 * time.Millisecond}
			for _, p := range []interface {
				Prepare(context.Context, load.Workload) error
			}{cd, ed} {
				if err := p.Prepare(t.Context(), w); err != nil {
					t.Fatal(err)
				}
			}
			wantIndexes := []string(nil)
			if w.Documents() {
				wantIndexes = []string{load.IndexGrp + "(grp)", load.IndexAge + "(age)"}
			}
			if !slices.Equal(cl.indexes, wantIndexes) {
				t.Fatalf("Cairn's prepare created indexes %q, want %q", cl.indexes, wantIndexes)
			}
			for _, d := range []load.Driver{cd, ed} { // connect first, so the run is not all dialling
				if err := d.Do(t.Context(), 0, load.Op{Kind: load.KindGet, Key: "warm/up"}); err != nil {
					t.Fatal(err)
				}
			}
			cl.ops, el.ops = nil, nil
			for _, d := range []load.Driver{cd, ed} {
				res, err := load.Run(t.Context(), d, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if res.Errors > 0 {
					t.Fatalf("%T: %d errors, first %v", d, res.Errors, res.FirstError)
				}
			}
			c, e := cl.all(), el.all()
			n := min(len(c), len(e))
			if n < 10 {
				t.Fatalf("only %d (Cairn) and %d (etcd) operations recorded", len(c), len(e))
			}
			for i := range n {
				want := e[i]
				want.end = ""
				if c[i] != want {
					t.Fatalf("operation %d: Cairn got %v, etcd got %v", i, c[i], e[i])
				}
				if e[i].kind == "scan" && (e[i].end != load.KeyPrefixEnd || e[i].limit != load.ScanLimit) {
					t.Fatalf("etcd scan range end %q limit %d, want %q %d", e[i].end, e[i].limit, load.KeyPrefixEnd, load.ScanLimit)
				}
			}
			gen := load.NewGen(w, 3, 0, 1000, 64)
			for i := range n { // and both are the generator's stream
				op := gen.Next()
				want := seen{kind: op.Kind.String(), key: op.Key, value: string(op.Value)}
				switch op.Kind {
				case load.KindTxn:
					want.key += "," + op.Key2
				case load.KindDocInsert:
					want = docSeen(map[string]any{"_id": op.Doc.ID, "grp": op.Doc.Group, "age": op.Doc.Age, "pad": op.Doc.Pad})
				case load.KindDocFind:
					want.key = strconv.Itoa(op.Group)
				case load.KindScan:
					want.limit = op.Limit
				}
				if want.kind == "get" || want.kind == "scan" {
					want.stale = op.Stale
				}
				if c[i] != want {
					t.Fatalf("operation %d: sent %v, generator says %v %s", i, c[i], op.Kind, op.Key)
				}
			}
		})
	}
}

func TestCairnDriverSpreadsClientsAndReportsErrors(t *testing.T) {
	var hits [2]int
	var mu sync.Mutex
	var addrs []string
	for i := range 2 {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			hits[i]++
			mu.Unlock()
			w.WriteHeader(http.StatusInternalServerError)
		}))
		t.Cleanup(srv.Close)
		u, _ := url.Parse(srv.URL)
		addrs = append(addrs, u.Host)
	}
	d, err := cairn.New(addrs, 4, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	for worker := range 4 {
		if err := d.Do(t.Context(), worker, load.Op{Kind: load.KindGet, Key: "k"}); err == nil {
			t.Fatal("a 500 answer was not an error")
		}
	}
	if hits != [2]int{2, 2} {
		t.Errorf("requests per node %v, want 2 and 2", hits)
	}
}
