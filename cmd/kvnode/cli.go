package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/jsonx"
	"github.com/cairndb/cairn/node"
)

// subcommands talk to a running node over its HTTP API.
var subcommands = map[string]func(c *client.Client, o cliOpts, args []string, out io.Writer) error{
	"get":    cmdGet,
	"put":    cmdPut,
	"delete": cmdDelete,
	"scan":   cmdScan,
	"status": cmdStatus,
	"txn":    cmdTxn,
	"docs":   cmdDocs,

	"transfer-leader": cmdTransferLeader,
	"remove-node":     cmdRemoveNode,
}

const cliUsage = `usage: kvnode [flags]                      run a node (kvnode -h lists the flags)
       kvnode demo [--dir D] [--base-port P]      run a 3-node cluster on loopback
       kvnode get [--addr A] [--stale D] KEY
       kvnode put [--addr A] [--if-version N] KEY VALUE   (VALUE "-" reads stdin)
       kvnode delete [--addr A] [--if-version N] KEY
       kvnode scan [--addr A] [--prefix P] [--start S] [--end E] [--limit N] [--reverse]
       kvnode status [--addr A]
       kvnode txn [--addr A] JSON                 (a POST /v1/txn body; "-" reads stdin)
       kvnode txn list [--addr A]                 (locks of in-flight or in-doubt transactions, on every node)
       kvnode txn resolve [--addr A] TXN-ID       (decide it now: abort if still pending)
       kvnode docs [--addr A] list|insert|get|put|patch|delete|find|drop ...   (kvnode docs lists them)
       kvnode transfer-leader [--addr A] [--to NODE] SHARD   (hand a shard's leadership to NODE, or any other replica)
       kvnode remove-node [--addr A] NODE                    (take a node that is down for good out of the cluster)
       kvnode bench [--addr A] [--clients N] [--duration D] [--keys N] [--value-size B]
                    [--read-ratio R] [--consistency linearizable|stale] [--seed S]`

// cliOpts are the subcommands' flags; each subcommand reads those it uses.
type cliOpts struct {
	ctx                context.Context
	ifVersion          int64
	stale              time.Duration
	prefix, start, end string
	limit              int
	reverse            bool
	to                 string
}

// runCLI runs subcommand name against --addr (default 127.0.0.1:7070).
func runCLI(name string, args []string, out io.Writer) error {
	fn := subcommands[name]
	var o cliOpts
	fs := flag.NewFlagSet("kvnode "+name, flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:7070", "node HTTP address")
	timeout := fs.Duration("timeout", 10*time.Second, "request timeout")
	fs.Int64Var(&o.ifVersion, "if-version", -1, "put/delete: only if the key is at this version (0: absent)")
	fs.DurationVar(&o.stale, "stale", -1, "get: read any replica, at most this stale (0: unbounded)")
	fs.StringVar(&o.prefix, "prefix", "", "scan: key prefix")
	fs.StringVar(&o.start, "start", "", "scan: first key")
	fs.StringVar(&o.end, "end", "", "scan: end key (exclusive)")
	fs.IntVar(&o.limit, "limit", 0, "scan: keys per page (all pages are fetched)")
	fs.BoolVar(&o.reverse, "reverse", false, "scan: descending key order")
	fs.StringVar(&o.to, "to", "", "transfer-leader: the node to lead the shard (default: any other replica)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	o.ctx = ctx
	return fn(client.New(*addr), o, fs.Args(), out)
}

func (o cliOpts) writeOpts() []client.WriteOption {
	if o.ifVersion >= 0 {
		return []client.WriteOption{client.IfVersion(uint64(o.ifVersion))}
	}
	return nil
}

func wantArgs(args []string, n int, what string) error {
	if len(args) != n {
		return fmt.Errorf("want %s, got %d argument(s)", what, len(args))
	}
	return nil
}

func cmdGet(c *client.Client, o cliOpts, args []string, out io.Writer) error {
	if err := wantArgs(args, 1, "KEY"); err != nil {
		return err
	}
	var opts []client.ReadOption
	if o.stale >= 0 {
		opts = append(opts, client.Stale(o.stale))
	}
	v, ver, err := c.Get(o.ctx, args[0], opts...)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "version %d\n", ver)
	_, err = out.Write(v)
	return err
}

func cmdPut(c *client.Client, o cliOpts, args []string, out io.Writer) error {
	if err := wantArgs(args, 2, "KEY VALUE"); err != nil {
		return err
	}
	value := []byte(args[1])
	if args[1] == "-" {
		var err error
		if value, err = io.ReadAll(os.Stdin); err != nil {
			return err
		}
	}
	v, err := c.Put(o.ctx, args[0], value, o.writeOpts()...)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "version %d\n", v)
	return nil
}

func cmdDelete(c *client.Client, o cliOpts, args []string, out io.Writer) error {
	if err := wantArgs(args, 1, "KEY"); err != nil {
		return err
	}
	if err := c.Delete(o.ctx, args[0], o.writeOpts()...); err != nil {
		return err
	}
	fmt.Fprintln(out, "deleted")
	return nil
}

func cmdScan(c *client.Client, o cliOpts, args []string, out io.Writer) error {
	if err := wantArgs(args, 0, "no arguments"); err != nil {
		return err
	}
	req := client.ScanRequest{Prefix: o.prefix, Start: o.start, End: o.end, Limit: o.limit, Reverse: o.reverse}
	for {
		page, err := c.Scan(o.ctx, req)
		if err != nil {
			return err
		}
		for _, it := range page.Items {
			fmt.Fprintf(out, "%s\t%d\t%s\n", printable([]byte(it.Key)), it.Version, printable(it.Value))
		}
		if page.Cursor == "" {
			return nil
		}
		req.Cursor = page.Cursor
	}
}

func printable(v []byte) string {
	s := string(v)
	if strings.ToValidUTF8(s, "") != s || strings.ContainsAny(s, "\t\n") {
		return fmt.Sprintf("%q", v)
	}
	return s
}

func cmdStatus(c *client.Client, o cliOpts, args []string, out io.Writer) error {
	if err := wantArgs(args, 0, "no arguments"); err != nil {
		return err
	}
	raw, err := c.Cluster(o.ctx)
	if err != nil {
		return err
	}
	var st node.ClusterStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY: " + st.NotReady
	}
	fmt.Fprintf(out, "node %s  cluster %s  ring epoch %d  placement epoch %d  replicas %d  %s\n",
		st.Node, st.ClusterID, st.RingEpoch, st.PlacementEpoch, st.Replicas, ready)
	fmt.Fprintf(out, "\n%-12s %-6s %-22s %-22s %s\n", "NODE", "ALIVE", "RAFT", "HTTP", "LEADS")
	for _, nd := range st.Nodes {
		alive := "yes"
		if !nd.Alive {
			alive = "NO"
		}
		if !nd.Registered {
			alive += "*"
		}
		leads := joinIDs(nd.Leads)
		if nd.DiskLow {
			leads += "  (disk below its minimum free space: writes refused)"
		}
		fmt.Fprintf(out, "%-12s %-6s %-22s %-22s %s\n", nd.Name, alive, nd.RaftAddr, nd.HTTPAddr, leads)
	}
	fmt.Fprintf(out, "\n%-6s %-12s %-24s %-9s %6s %8s %8s\n", "SHARD", "LEADER", "REPLICAS", "LOCAL", "TERM", "COMMIT", "APPLIED")
	for _, sh := range st.Shards {
		role, term, commit, applied := "-", "-", "-", "-"
		if l := sh.Local; l != nil {
			role, term = l.Role, strconv.FormatUint(l.Term, 10)
			commit, applied = strconv.FormatUint(l.CommitIndex, 10), strconv.FormatUint(l.Applied, 10)
			for _, r := range l.Replicas {
				if r.ID == st.Node && !r.Voter {
					role += "(nv)"
				}
			}
		}
		leader := sh.Leader
		if leader == "" {
			leader = "?"
		}
		reps := strings.Join(sh.Replicas, ",")
		if sh.Shard == 0 {
			reps = "(all nodes)"
		}
		fmt.Fprintf(out, "%-6d %-12s %-24s %-9s %6s %8s %8s\n", sh.Shard, leader, reps, role, term, commit, applied)
	}
	return nil
}

func joinIDs(ids []uint64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(id, 10)
	}
	return strings.Join(s, ",")
}

func cmdTransferLeader(c *client.Client, o cliOpts, args []string, out io.Writer) error {
	if err := wantArgs(args, 1, "a shard number"); err != nil {
		return err
	}
	id, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil {
		return fmt.Errorf("shard must be a number: %q", args[0])
	}
	leader, err := c.TransferLeader(o.ctx, id, o.to)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "shard %d: leader %s\n", id, leader)
	return nil
}

func cmdRemoveNode(c *client.Client, o cliOpts, args []string, out io.Writer) error {
	if err := wantArgs(args, 1, "a node name"); err != nil {
		return err
	}
	if err := c.RemoveNode(o.ctx, args[0]); err != nil {
		return err
	}
	fmt.Fprintf(out, "removed %s; its replicas move to the other nodes (kvnode status shows the progress)\n", args[0])
	return nil
}

// cmdTxn runs a compare-and-write transaction given as the JSON body of
// POST /v1/txn and prints the answer as JSON.
func cmdTxn(c *client.Client, o cliOpts, args []string, out io.Writer) error {
	switch {
	case len(args) == 1 && args[0] == "list":
		return cmdTxnList(c, o, out)
	case len(args) == 2 && args[0] == "resolve":
		return cmdTxnResolve(c, o, args[1], out)
	}
	if err := wantArgs(args, 1, "a transaction as JSON (or - for stdin), list, or resolve TXN-ID"); err != nil {
		return err
	}
	body := []byte(args[0])
	if args[0] == "-" {
		var err error
		if body, err = io.ReadAll(os.Stdin); err != nil {
			return err
		}
	}
	var t client.Txn
	if err := jsonx.Decode(body, &t, jsonx.Options{Strict: true}); err != nil {
		return fmt.Errorf("txn: not a transaction: %w", err)
	}
	r, err := c.Txn(o.ctx, t)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// clusterIntents gathers the intents of every node of the cluster.
func clusterIntents(c *client.Client, o cliOpts) ([]client.Intent, []string, error) {
	raw, err := c.Cluster(o.ctx)
	if err != nil {
		return nil, nil, err
	}
	var st node.ClusterStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, nil, fmt.Errorf("status: %w", err)
	}
	var all []client.Intent
	var owners, unreachable []string
	for _, nd := range st.Nodes {
		if !nd.Alive || nd.HTTPAddr == "" {
			unreachable = append(unreachable, nd.Name)
			continue
		}
		ins, err := client.New(nd.HTTPAddr).Intents(o.ctx)
		if err != nil {
			unreachable = append(unreachable, nd.Name)
			continue
		}
		for range ins {
			owners = append(owners, nd.Name)
		}
		all = append(all, ins...)
	}
	if len(unreachable) > 0 {
		fmt.Fprintf(os.Stderr, "not asked (down or unreachable): %s\n", strings.Join(unreachable, ", "))
	}
	return all, owners, nil
}

func cmdTxnList(c *client.Client, o cliOpts, out io.Writer) error {
	ins, owners, err := clusterIntents(c, o)
	if err != nil {
		return err
	}
	if len(ins) == 0 {
		fmt.Fprintln(out, "no transaction holds a lock")
		return nil
	}
	fmt.Fprintf(out, "%-34s %-7s %-6s %-6s %-9s %-8s %s\n", "TXN", "RECORD", "SHARD", "LOCK", "AGE", "NODE", "KEY")
	for i, in := range ins {
		lock, key := "read", printable([]byte(in.Key))
		switch {
		case in.Write:
			lock = "write"
		case in.Range:
			lock, key = "range", fmt.Sprintf("[%s, %s)", key, printable([]byte(in.End)))
		}
		age := (time.Duration(in.AgeMillis) * time.Millisecond).Round(time.Millisecond)
		fmt.Fprintf(out, "%-34s %-7d %-6d %-6s %-9s %-8s %s\n", in.TxnID, in.RecordShard, in.Shard, lock, age, owners[i], key)
	}
	return nil
}

func cmdTxnResolve(c *client.Client, o cliOpts, id string, out io.Writer) error {
	ins, _, err := clusterIntents(c, o)
	if err != nil {
		return err
	}
	for _, in := range ins {
		if in.TxnID == id {
			status, err := c.ResolveTxn(o.ctx, id, in.RecordShard)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "transaction %s: %s; its locks are released within a resolver round (2s)\n", id, status)
			return nil
		}
	}
	return fmt.Errorf("transaction %s holds no lock on any node asked", id)
}
