package jepsen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairndb/cairn/jepsen/checker"
	"github.com/cairndb/cairn/jepsen/cluster"
	"github.com/cairndb/cairn/jepsen/history"
)

// workload is one kind of client traffic.
type workload interface {
	// step runs one operation as wk's process and returns its outcome.
	step(ctx context.Context, wk *worker) history.Type
	// final runs after every fault is healed.
	final(ctx context.Context) error
}

// Run performs one test and returns its report. The error is for runs
// that could not be carried out (no cluster, a build failure); a run whose
// history fails a checker returns a report with Valid false and no error.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	dir, err := runDir(o)
	if err != nil {
		return nil, err
	}
	logf("run folder %s (seed %d)", dir, o.Seed)
	bin := o.Binary
	if bin == "" {
		if bin, err = buildKVNode(ctx, dir, o); err != nil {
			return nil, err
		}
	}

	mode := map[string]cluster.Mode{"auto": cluster.Auto, "netns": cluster.Netns, "loopback": cluster.Loopback}[o.Mode]
	ccfg := cluster.Config{Nodes: o.Nodes, Binary: bin, Dir: filepath.Join(dir, "nodes"), Mode: mode, Shards: o.Shards,
		// Nodes give up on a request before the client does, so that a
		// node cut off from its leaders answers "unavailable" (certainly
		// not applied) instead of leaving the client with a timeout.
		ExtraArgs: []string{"--request-timeout=" + (o.OpTimeout * 3 / 4).String()}}
	if slices.Contains(o.Nemeses, NemesisDisk) {
		ccfg.DiskSize = diskSize
		ccfg.ExtraArgs = append(ccfg.ExtraArgs, "--min-free-disk="+strconv.Itoa(diskMinFree))
	}
	c, err := cluster.Start(ctx, ccfg)
	if err != nil {
		return nil, fmt.Errorf("start cluster: %w", err)
	}
	defer c.Close()
	for _, n := range o.Nemeses {
		if n == NemesisTransfer || n == NemesisMove {
			continue // any cluster; the variant with a partition only where partitions work
		}
		if n == NemesisNetem && c.Supports("loss") && !c.Supports("delay") {
			logf("this kernel has no netem qdisc: the netem nemesis drops packets but cannot delay them")
			continue
		}
		if !c.Supports(n) {
			return nil, fmt.Errorf("nemesis %s is not available in %v mode (partitions and netem need root and network namespaces, disks need root)", n, c.Mode())
		}
	}
	var names, addrs []string
	for _, n := range c.Nodes() {
		names, addrs = append(names, n.Name), append(addrs, n.HTTPAddr)
	}
	logf("cluster up: %d nodes (%v): %s", len(names), c.Mode(), strings.Join(addrs, " "))

	epoch, placed, err := placementOf(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("read the placement: %w", err)
	}

	hf, err := os.Create(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return nil, err
	}
	defer hf.Close()
	rec := history.NewRecorder(hf)
	e := newEnv(rec, names, addrs, o.OpTimeout)
	var wls []workload
	var bank *bankWorkload
	for _, w := range o.Workloads {
		switch w {
		case Register:
			wls = append(wls, newRegister(e, 6, 250))
		case Set:
			wls = append(wls, newSet(e, time.Second))
		case Append:
			wls = append(wls, newAppend(e, 8))
		case DocSet:
			if err := setupDocSet(ctx, e); err != nil {
				return nil, err
			}
			wls = append(wls, newDocSet(e, time.Second))
		case Unique:
			u := newUnique(e, max(o.Interval/4, 500*time.Millisecond))
			if err := u.setup(ctx); err != nil {
				return nil, err
			}
			wls = append(wls, u)
		case Bank:
			bank = newBank(e, 8, 100)
			if err := bank.setup(ctx); err != nil {
				return nil, err
			}
			wls = append(wls, bank)
		}
	}

	// Clients and nemesis run for the duration.
	start := time.Now()
	runCtx, stopRun := context.WithTimeout(ctx, o.Duration)
	defer stopRun()
	tokens := make(chan struct{}, o.Clients)
	go pace(runCtx, tokens, o.Rate)
	var wg sync.WaitGroup
	for id := range o.Clients {
		wk := &worker{process: e.process(), pinned: -1, rng: rand.New(rand.NewPCG(uint64(o.Seed), uint64(id)+1))}
		if id%2 == 0 {
			wk.pinned = (id / 2) % o.Nodes // half the workers pinned, spread over the nodes
		}
		// Workers go to workloads in pairs (one pinned, one floating), so
		// every workload gets both kinds.
		wl := wls[(id/2)%len(wls)]
		wg.Go(func() {
			for {
				select {
				case <-runCtx.Done():
					return
				case <-tokens:
				}
				if wl.step(runCtx, wk) == history.Info {
					wk.process = e.process()
				}
			}
		})
	}
	nem := newNemesis(c, rec, o.Nemeses, o.Seed, o.Interval, logf)
	var nemErr error
	nemDone := make(chan struct{})
	go func() { defer close(nemDone); nemErr = nem.run(runCtx) }()
	progress := time.NewTicker(10 * time.Second)
	go func() {
		for {
			select {
			case <-runCtx.Done():
				return
			case <-progress.C:
				logf("%s: %d events", time.Since(start).Round(time.Second), len(rec.Ops()))
			}
		}
	}()
	wg.Wait()
	<-nemDone
	progress.Stop()
	clientEnd := time.Since(start)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	// Every fault is healed (the nemesis healed its last one); make sure
	// no node stays down or paused, then let the cluster recover.
	rec.Nemesis("heal-all", "every node running, no partition, no netem")
	var healErrs []error
	for _, n := range c.Nodes() {
		if c.Paused(n.Index) {
			healErrs = append(healErrs, c.Resume(n.Index))
		} else if !c.Running(n.Index) {
			healErrs = append(healErrs, c.Restart(n.Index))
		}
	}
	if c.Supports(NemesisPartition) {
		healErrs = append(healErrs, c.Heal(), c.ClearNetem())
	}
	if err := errors.Join(healErrs...); err != nil {
		return nil, fmt.Errorf("heal: %w", err)
	}
	recoverCtx, cancel := context.WithTimeout(ctx, o.Recovery)
	defer cancel()
	var finalErrs []string
	if err := waitReady(recoverCtx, e); err != nil {
		finalErrs = append(finalErrs, err.Error())
	}
	for _, wl := range wls {
		if err := wl.final(recoverCtx); err != nil {
			finalErrs = append(finalErrs, err.Error())
		}
	}
	logf("final reads done; checking convergence")
	conv := checkConvergence(ctx, c, o.Recovery)
	member := checkMembership(ctx, c, epoch, placed, slices.Contains(o.Nemeses, NemesisMove), o.Recovery)
	if err := rec.Flush(); err != nil {
		return nil, fmt.Errorf("write history: %w", err)
	}
	if err := c.Close(); err != nil {
		logf("close cluster: %v", err)
	}

	ops := rec.Ops()
	rep := &Report{
		Options: o, Dir: dir, Mode: c.Mode().String(), Events: len(ops),
		ClientTime: clientEnd, FinalErrors: finalErrs, Convergence: conv, Membership: member,
	}
	if nemErr != nil {
		rep.NemesisErrors = nemErr.Error()
	}
	rep.summarize(ops)
	for _, w := range o.Workloads {
		switch w {
		case Register:
			r, err := checker.CheckRegister(ops, checker.RegisterOptions{Timeout: 5 * time.Minute, HTMLPath: filepath.Join(dir, "register.html")})
			if err != nil {
				return nil, fmt.Errorf("check register: %w", err)
			}
			rep.Register = &r
		case Set:
			r := checker.CheckSet(ops)
			rep.Set = &r
		case Bank:
			r := checker.CheckBank(ops, bank.total())
			rep.Bank = &r
		case DocSet:
			r := checkDocSet(ops)
			rep.DocSet = &r
		case Unique:
			r := checkUnique(ops)
			rep.Unique = &r
		case Append:
			r, err := checkAppend(ops)
			if err != nil {
				rep.FinalErrors = append(rep.FinalErrors, "append history: "+err.Error())
				continue
			}
			rep.Append = r
			if err := os.WriteFile(filepath.Join(dir, "append.txt"), []byte(r.String()), 0o644); err != nil {
				return nil, err
			}
		}
	}
	rep.decide()
	if err := rep.write(dir); err != nil {
		return rep, err
	}
	return rep, nil
}

// pace hands out rate tokens per second until ctx ends; tokens nobody
// takes are dropped, so a stalled cluster does not build up a burst.
func pace(ctx context.Context, tokens chan<- struct{}, rate float64) {
	t := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			select {
			case tokens <- struct{}{}:
			default:
			}
		}
	}
}

// waitReady waits until every node answers /readyz.
func waitReady(ctx context.Context, e *env) error {
	for i, c := range e.clients {
		for {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := c.Ready(rctx)
			cancel()
			if err == nil {
				break
			}
			if sleepCtx(ctx, 200*time.Millisecond) != nil {
				return fmt.Errorf("%s not ready after healing: %v", e.names[i], err)
			}
		}
	}
	return nil
}

func runDir(o Options) (string, error) {
	name := fmt.Sprintf("%s-%s-%s-n%d-s%d", time.Now().UTC().Format("20060102T150405Z"),
		strings.Join(o.Workloads, "+"), nemesisLabel(o.Nemeses), o.Nodes, o.Seed)
	if o.Bug != "" {
		name += "-bug-" + o.Bug
	}
	dir, err := filepath.Abs(filepath.Join(o.Dir, name))
	if err != nil {
		return "", err
	}
	return dir, os.MkdirAll(dir, 0o755)
}

func nemesisLabel(ns []string) string {
	if len(ns) == 0 {
		return "none"
	}
	return strings.Join(ns, "+")
}

// buildKVNode builds kvnode from the module that holds this package's
// source, with the planted bug's build tag when one is asked for.
func buildKVNode(ctx context.Context, dir string, o Options) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "kvnode")
	args := []string{"build", "-o", bin}
	if o.Race {
		args = append(args, "-race")
	}
	if o.Bug != "" {
		args = append(args, "-tags", Bugs[o.Bug])
	}
	args = append(args, "./cmd/kvnode")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// moduleRoot finds the directory of go.mod from the working directory up.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the cairn module: run from the repository (or pass a kvnode binary)")
	}
	return filepath.Dir(mod), nil
}

// writeJSON writes v as indented JSON to path.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
