package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cairndb/cairn/client"
)

// subcommands talk to a running node over its HTTP API.
var subcommands = map[string]func(c *client.Client, o cliOpts, args []string, out io.Writer) error{
	"get":    cmdGet,
	"put":    cmdPut,
	"delete": cmdDelete,
	"scan":   cmdScan,
	"status": cmdStatus,
}

const cliUsage = `usage: kvnode [flags]                      run a node
       kvnode get [--addr A] [--stale D] KEY
       kvnode put [--addr A] [--if-version N] KEY VALUE   (VALUE "-" reads stdin)
       kvnode delete [--addr A] [--if-version N] KEY
       kvnode scan [--addr A] [--prefix P] [--start S] [--end E] [--limit N]
       kvnode status [--addr A]
       kvnode bench [--addr A] [--clients N] [--duration D] [--keys N] [--value-size B]
                    [--read-ratio R] [--consistency linearizable|stale] [--seed S]`

// cliOpts are the subcommands' flags; each subcommand reads those it uses.
type cliOpts struct {
	ctx                context.Context
	ifVersion          int64
	stale              time.Duration
	prefix, start, end string
	limit              int
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
	req := client.ScanRequest{Prefix: o.prefix, Start: o.start, End: o.end, Limit: o.limit}
	for {
		page, err := c.Scan(o.ctx, req)
		if err != nil {
			return err
		}
		for _, it := range page.Items {
			fmt.Fprintf(out, "%s\t%d\t%s\n", it.Key, it.Version, printable(it.Value))
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
	var st struct {
		Node      string `json:"node"`
		RaftAddr  string `json:"raft_addr"`
		RingEpoch uint64 `json:"ring_epoch"`
		Shards    []struct {
			Shard    uint64 `json:"shard"`
			Role     string `json:"role"`
			Leader   string `json:"leader"`
			Term     uint64 `json:"term"`
			Commit   uint64 `json:"commit_index"`
			Applied  uint64 `json:"applied_index"`
			Replicas []struct {
				ID    string `json:"id"`
				Voter bool   `json:"voter"`
			} `json:"replicas"`
		} `json:"shards"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	fmt.Fprintf(out, "node %s  raft %s  ring epoch %d\n", st.Node, st.RaftAddr, st.RingEpoch)
	fmt.Fprintf(out, "%-6s %-9s %-12s %6s %8s %8s  %s\n", "SHARD", "ROLE", "LEADER", "TERM", "COMMIT", "APPLIED", "REPLICAS")
	for _, s := range st.Shards {
		var reps []string
		for _, r := range s.Replicas {
			if !r.Voter {
				r.ID += "(non-voter)"
			}
			reps = append(reps, r.ID)
		}
		fmt.Fprintf(out, "%-6d %-9s %-12s %6d %8d %8d  %s\n", s.Shard, s.Role, s.Leader, s.Term, s.Commit, s.Applied, strings.Join(reps, ","))
	}
	return nil
}
