package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/jsonx"
)

const docsUsage = `usage: kvnode docs [--addr A] list
       kvnode docs [--addr A] insert COLL JSON             ("-" reads stdin)
       kvnode docs [--addr A] get COLL ID
       kvnode docs [--addr A] put [--if-version N] COLL ID JSON
       kvnode docs [--addr A] patch [--if-version N] COLL ID JSON   (RFC 7386 merge patch)
       kvnode docs [--addr A] delete [--if-version N] COLL ID
       kvnode docs [--addr A] find [--sort F,-G] [--fields F,G] [--limit N] [--hint INDEX|_scan] COLL [FILTER]
       kvnode docs [--addr A] drop COLL
       kvnode docs [--addr A] index [--unique] COLL NAME FIELD...   (create an index; built over what is there)
       kvnode docs [--addr A] indexes COLL
       kvnode docs [--addr A] drop-index COLL NAME
       kvnode docs [--addr A] analyze COLL                    (refresh the planner's statistics)
       kvnode docs [--addr A] explain [--hint INDEX|_scan] COLL [FILTER]`

// cmdDocs runs the document subcommands; each prints JSON.
func cmdDocs(c *client.Client, o cliOpts, args []string, out io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("want an action\n%s", docsUsage)
	}
	action := args[0]
	fs := flag.NewFlagSet("kvnode docs "+action, flag.ContinueOnError)
	ifVersion := fs.Int64("if-version", -1, "put, patch, delete: only at this version")
	sortBy := fs.String("sort", "", "find: comma-separated fields, - for descending")
	fields := fs.String("fields", "", "find: comma-separated fields to keep")
	limit := fs.Int("limit", 0, "find: documents per page (all pages are fetched)")
	hint := fs.String("hint", "", "find: an index to use, several comma-separated for their intersection, _sort:INDEX to read an index in sort order, or _scan")
	unique := fs.Bool("unique", false, "index: no two documents may share a value")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	args = fs.Args()
	var iv *uint64
	if *ifVersion >= 0 {
		v := uint64(*ifVersion)
		iv = &v
	}
	print := func(v any) error {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	body := func(arg string) (any, error) {
		b := []byte(arg)
		if arg == "-" {
			var err error
			if b, err = io.ReadAll(os.Stdin); err != nil {
				return nil, err
			}
		}
		var v any
		if err := jsonx.Decode(b, &v, jsonx.Options{Numbers: true}); err != nil {
			return nil, fmt.Errorf("not one JSON value: %w", err)
		}
		return v, nil
	}
	written := func(id string, v uint64, err error) error {
		if err != nil {
			return err
		}
		return print(map[string]any{"_id": id, "_version": v})
	}
	switch {
	case action == "list" && len(args) == 0:
		names, err := c.Collections(o.ctx)
		if err != nil {
			return err
		}
		for _, n := range names {
			fmt.Fprintln(out, n)
		}
		return nil
	case action == "insert" && len(args) == 2:
		d, err := body(args[1])
		if err != nil {
			return err
		}
		return written(c.InsertDoc(o.ctx, args[0], d))
	case action == "get" && len(args) == 2:
		d, err := c.GetDoc(o.ctx, args[0], args[1])
		if err != nil {
			return err
		}
		return print(d)
	case (action == "put" || action == "patch") && len(args) == 3:
		d, err := body(args[2])
		if err != nil {
			return err
		}
		var v uint64
		if action == "put" {
			v, err = c.ReplaceDoc(o.ctx, args[0], args[1], d, iv)
		} else {
			v, err = c.PatchDoc(o.ctx, args[0], args[1], d, iv)
		}
		return written(args[1], v, err)
	case action == "delete" && len(args) == 2:
		if err := c.DeleteDoc(o.ctx, args[0], args[1], iv); err != nil {
			return err
		}
		return print(map[string]any{"_id": args[1], "deleted": true})
	case action == "find" && (len(args) == 1 || len(args) == 2):
		q := client.FindRequest{Limit: *limit, Sort: splitList(*sortBy), Fields: splitList(*fields), Hint: *hint}
		if len(args) == 2 {
			f, err := body(args[1])
			if err != nil {
				return err
			}
			q.Filter = f
		}
		for {
			docs, cursor, err := c.FindDocs(o.ctx, args[0], q)
			if err != nil {
				return err
			}
			for _, d := range docs {
				line, _ := json.Marshal(d)
				fmt.Fprintln(out, string(line))
			}
			if cursor == "" {
				return nil
			}
			q.Cursor = cursor
		}
	case action == "index" && len(args) >= 3:
		create := c.CreateIndex
		if *unique {
			create = c.CreateUniqueIndex
		}
		state, err := create(o.ctx, args[0], args[1], args[2:]...)
		if err != nil {
			return err
		}
		return print(map[string]any{"name": args[1], "fields": args[2:], "state": state})
	case action == "indexes" && len(args) == 1:
		list, err := c.Indexes(o.ctx, args[0])
		if err != nil {
			return err
		}
		return print(list)
	case action == "drop-index" && len(args) == 2:
		if err := c.DropIndex(o.ctx, args[0], args[1]); err != nil {
			return err
		}
		return print(map[string]any{"dropped": args[1]})
	case action == "analyze" && len(args) == 1:
		raw, err := c.Analyze(o.ctx, args[0])
		if err != nil {
			return err
		}
		var v any
		_ = json.Unmarshal(raw, &v)
		return print(v)
	case action == "explain" && (len(args) == 1 || len(args) == 2):
		q := client.FindRequest{Hint: *hint}
		if len(args) == 2 {
			f, err := body(args[1])
			if err != nil {
				return err
			}
			q.Filter = f
		}
		raw, err := c.Explain(o.ctx, args[0], q)
		if err != nil {
			return err
		}
		var v any
		_ = json.Unmarshal(raw, &v)
		return print(v)
	case action == "drop" && len(args) == 1:
		if err := c.DropCollection(o.ctx, args[0]); err != nil {
			return err
		}
		return print(map[string]any{"dropped": args[0]})
	}
	return fmt.Errorf("bad arguments for docs %s\n%s", action, docsUsage)
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
